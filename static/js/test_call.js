// The agent page's "Test call": talk to the agent with the microphone. The page speaks
// Twilio's Media Streams protocol to /browser/call/<agent> (calls/browser_calls.py); the
// audio work happens in static/js/test_call_worklet.js.
(function () {
  const panel = document.getElementById("test-call");
  if (!panel) return;
  const button = panel.querySelector("button");
  const status = panel.querySelector(".status-line");
  const transcript = panel.querySelector(".live-transcript");
  let session = null;

  function toBase64(buffer) {
    let text = "";
    const bytes = new Uint8Array(buffer);
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }
  function fromBase64(text) {
    const raw = atob(text);
    const samples = new Int16Array(raw.length / 2);
    const view = new DataView(new ArrayBuffer(raw.length));
    for (let i = 0; i < raw.length; i++) view.setUint8(i, raw.charCodeAt(i));
    for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true);
    const floats = new Float32Array(samples.length);
    for (let i = 0; i < samples.length; i++) floats[i] = samples[i] / 0x8000;
    return floats;
  }

  async function start() {
    button.disabled = true;
    status.textContent = "Asking for the microphone…";
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 },
    });
    const context = new AudioContext({ sampleRate: 24000 });
    await context.audioWorklet.addModule(panel.dataset.worklet);
    const node = new AudioWorkletNode(context, "test-call", { outputChannelCount: [1] });
    context.createMediaStreamSource(mic).connect(node);
    node.connect(context.destination);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${panel.dataset.socket}`);
    const streamSid = "MZ" + crypto.randomUUID().replace(/-/g, "");
    let callSid = null;
    let sentMs = 0;
    session = { socket, context, mic, timer: null };
    const send = (event) => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(event));

    node.port.onmessage = (event) => {
      if (event.data.frame && callSid) {
        send({ event: "media", streamSid, media: { track: "inbound", timestamp: String(sentMs), payload: toBase64(event.data.frame) } });
        sentMs += 20;
      } else if (event.data.played) {
        send({ event: "mark", streamSid, mark: { name: event.data.played } });
      }
    };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.event === "call") {
        callSid = msg.callSid;
        send({ event: "connected", protocol: "Call", version: "1.0.0" });
        send({ event: "start", streamSid, start: { streamSid, callSid, tracks: ["inbound"], customParameters: {} } });
        status.textContent = "Connected: speak to the agent.";
        panel.dataset.callSid = callSid;
        button.textContent = "Hang up";
        button.disabled = false;
        session.timer = setInterval(refreshTranscript, 1000);
      } else if (msg.event === "media") {
        node.port.postMessage({ audio: fromBase64(msg.media.payload) });
      } else if (msg.event === "mark") {
        node.port.postMessage({ mark: msg.mark.name });
      } else if (msg.event === "clear") {
        node.port.postMessage({ clear: true });
      }
    };
    socket.onclose = () => finish("The call has ended.");
  }

  async function refreshTranscript() {
    if (!panel.dataset.callSid || !panel.dataset.turns) return;
    const response = await fetch(panel.dataset.turns.replace("SID", panel.dataset.callSid), { credentials: "same-origin" });
    if (response.ok) transcript.innerHTML = await response.text();
  }

  function finish(text) {
    if (!session) return;
    const ended = session;
    session = null;
    clearInterval(ended.timer);
    refreshTranscript();
    if (ended.socket.readyState === WebSocket.OPEN) {
      ended.socket.send(JSON.stringify({ event: "stop" }));
      ended.socket.close();
    }
    ended.mic.getTracks().forEach((track) => track.stop());
    ended.context.close();
    status.textContent = text;
    button.textContent = "Test call";
    button.disabled = false;
  }

  button.addEventListener("click", () => {
    if (session) finish("You hung up.");
    else start().catch((error) => { status.textContent = `Could not start: ${error.message}`; button.disabled = false; });
  });
})();
