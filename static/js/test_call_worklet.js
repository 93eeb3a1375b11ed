// Audio thread of the browser test call (static/js/test_call.js), at 24 kHz:
// - the microphone, in 20 ms frames of 16-bit PCM, posted to the page;
// - the agent's audio, played from a queue in which the page puts marks: each mark is
//   posted back once the audio before it has played, as Twilio echoes its marks;
//   "clear" drops the queue and posts back every mark in it at once.
const FRAME = 480; // 20 ms at 24 kHz

class TestCallProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.queue = []; // Float32Array chunks and {mark} entries, in order
    this.offset = 0; // samples of queue[0] already played
    this.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.audio) this.queue.push(msg.audio);
      else if (msg.mark) this.queue.push({ mark: msg.mark });
      else if (msg.clear) {
        for (const entry of this.queue) if (entry.mark) this.port.postMessage({ played: entry.mark });
        this.queue = [];
        this.offset = 0;
      }
    };
  }

  process(inputs, outputs) {
    const mic = inputs[0] && inputs[0][0];
    if (mic) {
      for (let i = 0; i < mic.length; i++) {
        const s = Math.max(-1, Math.min(1, mic[i]));
        this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === FRAME) {
          this.port.postMessage({ frame: this.frame.buffer }, [this.frame.buffer]);
          this.frame = new Int16Array(FRAME);
          this.filled = 0;
        }
      }
    }
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length) {
      const head = this.queue[0];
      if (head.mark) {
        this.port.postMessage({ played: head.mark });
        this.queue.shift();
        continue;
      }
      const n = Math.min(out.length - written, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), written);
      written += n;
      this.offset += n;
      if (this.offset === head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, written);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("test-call", TestCallProcessor);
