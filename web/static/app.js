// medvseg live overlay page: plays the WebRTC video (WHEP signalling),
// shows the loop's stats and the source's state, sends control changes to
// /api/settings, and with the server's --stamp measures glass-to-glass
// latency from the frame number drawn in the video.
"use strict";

const video = document.getElementById("video");
const stateLabel = document.getElementById("state");
let resource = null; // WHEP resource URL to DELETE when leaving

// A server started with --token needs it on every API request. The page
// takes it from the URL fragment (#token=...), which browsers never send
// to the server, and keeps it for the tab's session.
const token = (() => {
  const fromURL = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromURL) {
    sessionStorage.setItem("medvseg-token", fromURL);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("medvseg-token");
})();

function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(path, { ...options, headers }).then((response) => {
    if (response.status === 401) showAuthError();
    return response;
  });
}

function showAuthError() {
  document.getElementById("auth-error").textContent =
    "This server requires a token: open the page as http://HOST:PORT/#token=TOKEN.";
}

function showState(state) {
  stateLabel.textContent = state;
  stateLabel.className = state;
}

// waitForGathering resolves when ICE gathering completes, or after
// timeoutMs. Signalling is not trickled, so the offer must carry the
// browser's candidates.
function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function connect() {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (event) => {
    video.srcObject = new MediaStream([event.track]);
  };
  pc.onconnectionstatechange = () => showState(pc.connectionState);
  latency.attach(pc.createDataChannel("medvseg"));

  await pc.setLocalDescription(await pc.createOffer());
  await waitForGathering(pc, 2000);

  const response = await api("/whep", {
    method: "POST",
    headers: { "Content-Type": "application/sdp" },
    body: pc.localDescription.sdp,
  });
  if (response.status !== 201) {
    pc.close();
    const error = new Error(`WHEP offer rejected: ${response.status} ${await response.text()}`);
    error.status = response.status;
    throw error;
  }
  resource = response.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return pc;
}

function leave() {
  if (resource) {
    api(resource, { method: "DELETE", keepalive: true });
    resource = null;
  }
}
window.addEventListener("pagehide", leave);

// Controls: each change is sent at once and the page shows what the server applied.
const controls = {
  overlay: document.getElementById("overlay"),
  opacity: document.getElementById("opacity"),
  threshold: document.getElementById("threshold"),
  keyframeInterval: document.getElementById("keyframe-interval"),
};
const settingsError = document.getElementById("settings-error");

function showSettings(s) {
  controls.overlay.checked = s.overlay;
  controls.opacity.value = s.opacity;
  controls.threshold.value = s.threshold;
  controls.keyframeInterval.value = s.keyframe_interval;
  document.getElementById("opacity-value").textContent = Number(s.opacity).toFixed(2);
  document.getElementById("threshold-value").textContent = Number(s.threshold).toFixed(2);
}

async function sendSettings(change) {
  const response = await api("/api/settings", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(change),
  });
  if (!response.ok) {
    settingsError.textContent = await response.text();
    return;
  }
  settingsError.textContent = "";
  showSettings(await response.json());
}

controls.overlay.addEventListener("change", () => sendSettings({ overlay: controls.overlay.checked }));
controls.opacity.addEventListener("input", () => sendSettings({ opacity: Number(controls.opacity.value) }));
controls.threshold.addEventListener("input", () => sendSettings({ threshold: Number(controls.threshold.value) }));
controls.keyframeInterval.addEventListener("change", () =>
  sendSettings({ keyframe_interval: Number(controls.keyframeInterval.value) }));

// Stats, polled once a second.
function setText(id, value) {
  document.getElementById(id).textContent = value;
}

async function refreshStats() {
  const response = await api("/api/stats");
  if (!response.ok) return;
  const s = await response.json();
  showSource(s.source);
  setText("input-fps", s.input_fps.toFixed(1));
  setText("output-fps", s.output_fps.toFixed(1));
  setText("keyframe-rate", s.keyframe_rate.toFixed(1));
  setText("dropped", s.dropped);
  setText("viewers", s.viewers);

  const rows = ["decoded", "segmented", "rendered", "encoded", "displayed"]
    .filter((stage) => s.latency_ms[stage])
    .map((stage) => {
      const l = s.latency_ms[stage];
      return `<tr><th>${stage}</th><td>${l.p50.toFixed(1)}</td><td>${l.p95.toFixed(1)}</td></tr>`;
    });
  document.querySelector("#latency tbody").innerHTML = rows.join("");
}

// showSource shows the input's state; a reconnecting source also shows why
// and when the next attempt is due.
function showSource(source) {
  const label = document.getElementById("source-state");
  const detail = document.getElementById("source-detail");
  if (!source) {
    label.textContent = "-";
    return;
  }
  label.textContent = source.state;
  label.className = source.state;
  let text = "";
  if (source.state === "reconnecting") {
    text = source.next_attempt_s ? `retry in ${source.next_attempt_s.toFixed(1)} s` : "retrying now";
    if (source.last_error) text += `: ${source.last_error}`;
  }
  if (source.reconnects > 0) text += ` (${source.reconnects} reconnects)`;
  detail.textContent = text;
}

// start connects, and after a failed connection or a failed offer tries
// again with a delay that doubles up to 10 s, so the page recovers from a
// network outage or a server restart. A missing token needs the user, so
// it is not retried.
let retryDelay = 1000;

async function start() {
  try {
    const pc = await connect();
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected") retryDelay = 1000;
      // "closed" here means the server closed the connection: the page
      // closes its own without an event.
      if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        pc.close();
        leave();
        retry();
      }
    });
  } catch (error) {
    showState("failed");
    console.error(error);
    if (error.status !== 401) retry();
  }
}

function retry() {
  document.getElementById("retry").textContent = `reconnecting in ${(retryDelay / 1000).toFixed(0)} s`;
  setTimeout(() => {
    document.getElementById("retry").textContent = "";
    start();
  }, retryDelay);
  retryDelay = Math.min(2 * retryDelay, 10000);
}

async function main() {
  api("/api/settings").then((r) => r.json()).then(showSettings);
  setInterval(() => refreshStats().catch(() => {}), 1000);
  start();
}

main();
