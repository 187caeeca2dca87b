// Hands every 128-frame block of the microphone, mixed to mono, to the page until told to stop.
class TakeRecorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.running = true;
    this.port.onmessage = () => { this.running = false; };
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels.length) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return this.running;
  }
}

registerProcessor("take-recorder", TakeRecorder);
