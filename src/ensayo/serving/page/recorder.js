// The page's recorder: an AudioWorklet processor that hands each block of microphone samples to the page,
// off the page's own thread (ScriptProcessorNode, which ran on it, is deprecated).
"use strict";

class EnsayoRecorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.recording = true;
    this.port.onmessage = (event) => { if (event.data === "stop") this.recording = false; };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && this.recording) this.port.postMessage(channel.slice(0));
    return this.recording;
  }
}

registerProcessor("ensayo-recorder", EnsayoRecorder);
