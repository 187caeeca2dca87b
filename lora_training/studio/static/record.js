// The Record page: Web Audio capture into a 16-bit PCM WAV (no MediaRecorder, so the server
// needs no ffmpeg), the upload, and the keys of the terminal recorder.
(() => {
  "use strict";
  let stream = null;
  let context = null;
  let take = null;  // {node, source, chunks, frames, prompt, text} while recording
  let generation = 0;  // bumped by every new take or page swap: a late upload answer is then dropped

  const $ = (id) => document.getElementById(id);

  function status(text) {
    const el = $("rec-status");
    if (el) el.textContent = text;
  }

  function showTake(html) {
    const box = $("take");
    if (!box) return;
    box.innerHTML = html;
    htmx.process(box);
  }

  function fail(message) {
    const box = $("take");
    if (!box) return;
    box.innerHTML = '<p class="error" role="alert"></p>';
    box.firstChild.textContent = "error: " + message;
  }

  async function microphone() {
    if (!navigator.mediaDevices || !window.AudioWorkletNode) {
      throw new Error("microphone: not available on this page, expected http://localhost or https, got " +
                      location.origin);
    }
    if (!stream) {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false},
      });
    }
    if (!context) {
      context = new AudioContext();
      await context.audioWorklet.addModule("/static/record-worklet.js");
    }
    await context.resume();
  }

  async function start() {
    const prompt = $("prompt");
    if (!prompt || !$("rec-button")) return;
    try {
      await microphone();
    } catch (e) {
      fail(e.message.startsWith("microphone:") ? e.message : "microphone: cannot open, expected access to a " +
           "microphone, got " + e.name + ": " + e.message);
      return;
    }
    const node = new AudioWorkletNode(context, "take-recorder");
    const source = context.createMediaStreamSource(stream);
    const maxFrames = Number($("recorder").dataset.maxSeconds) * context.sampleRate;
    generation += 1;
    take = {node, source, chunks: [], frames: 0, prompt: prompt.dataset.prompt, text: prompt.dataset.text};
    const current = take;
    node.port.onmessage = (event) => {
      if (take !== current) return;
      take.chunks.push(event.data);
      take.frames += event.data.length;
      const level = $("rec-level");
      if (level) level.value = event.data.reduce((peak, x) => Math.max(peak, Math.abs(x)), 0);
      if (take.frames >= maxFrames) stop();
    };
    source.connect(node);
    node.connect(context.destination);  // silent: the processor writes no output
    showTake("");
    const button = $("rec-button");
    button.classList.add("recording");
    button.innerHTML = "Stop <kbd>Space</kbd>";
    status("recording ...");
  }

  function halt() {
    const done = take;
    take = null;
    done.node.port.postMessage("stop");
    done.source.disconnect();
    done.node.disconnect();
    const button = $("rec-button");
    if (button) {
      button.classList.remove("recording");
      button.innerHTML = "Record <kbd>Space</kbd>";
    }
    const level = $("rec-level");
    if (level) level.value = 0;
    return done;
  }

  async function stop() {
    const done = halt();
    const mine = generation;
    status("checking the take ...");
    const body = new FormData();
    body.append("prompt", done.prompt);
    body.append("text", done.text);
    body.append("audio", wav(done.chunks, done.frames, context.sampleRate), "take.wav");
    let html;
    try {
      const response = await fetch("/record/takes", {method: "POST", body, headers: {"HX-Request": "true"}});
      html = await response.text();
    } catch (e) {
      html = null;
      if (mine === generation) fail("upload: failed, expected the studio to answer, got " + e.message);
    }
    if (mine !== generation) return;
    if (html !== null) showTake(html);
    status("");
  }

  function wav(chunks, frames, rate) {
    const view = new DataView(new ArrayBuffer(44 + 2 * frames));
    const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
    text(0, "RIFF");
    view.setUint32(4, 36 + 2 * frames, true);
    text(8, "WAVE");
    text(12, "fmt ");
    view.setUint32(16, 16, true);        // fmt chunk size
    view.setUint16(20, 1, true);         // PCM
    view.setUint16(22, 1, true);         // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, rate * 2, true);  // bytes per second
    view.setUint16(32, 2, true);         // bytes per frame
    view.setUint16(34, 16, true);        // bits per sample
    text(36, "data");
    view.setUint32(40, 2 * frames, true);
    let offset = 44;
    for (const chunk of chunks) {
      for (const x of chunk) {
        view.setInt16(offset, Math.round(Math.max(-1, Math.min(1, x)) * 32767), true);
        offset += 2;
      }
    }
    return new Blob([view], {type: "audio/wav"});
  }

  function toggle() {
    if (take) stop(); else start();
  }

  function press(id) {
    const button = $(id);
    if (button && !button.disabled) button.click();
  }

  document.addEventListener("click", (event) => {
    if (event.target.closest("#rec-button")) toggle();
  });

  // Leaving the prompt (skip, keep, history) drops a take still recording.
  document.body.addEventListener("htmx:beforeRequest", () => {
    generation += 1;
    if (take) halt();
    status("");
  });

  const typing = (event) => event.target.closest("input, textarea, select, [contenteditable]");

  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (key === " " || key === "Enter") event.preventDefault();  // never also "click" a focused button
    if (event.repeat) return;
    if (key === " ") toggle();
    else if (key === "Enter" && !take) press("keep");
    else if (key === "r" && !take) press("retake");
    else if (key === "n" || key === "ArrowRight") press("skip");
  });

  document.addEventListener("keyup", (event) => {
    if (!typing(event) && event.key === " ") event.preventDefault();
  });
})();
