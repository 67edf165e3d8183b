// Glass-to-glass latency from the server's --stamp code. The server draws
// each frame's number as a row of black and white cells in the top left
// corner and sends the frame's capture time over the data channel. For
// every frame the browser presents, the page reads the number back from
// the video, converts the expected display time to the server's clock
// with an offset measured by ping and pong, and subtracts the capture time.
"use strict";

const latency = (() => {
  const windowSize = 300; // recent samples summarised on the page
  const maxCaptures = 1000; // capture times kept for frames not yet shown

  let channel = null;
  let layout = null; // stamp layout sent by the server
  const captures = new Map(); // stamp value -> capture time, server Unix ms
  let offset = null; // server clock minus page clock, ms
  let bestRoundTrip = Infinity; // round trip of the probe offset came from, ms
  let lastValue = -1;
  const samples = []; // recent latencies, ms
  let unreported = []; // latencies not yet sent to the server
  let decoded = 0; // stamps read with a valid parity
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });

  let timersStarted = false;

  // attach serves a new connection's data channel. A reconnect may reach a
  // restarted server, so the clock offset and capture times start afresh.
  function attach(dataChannel) {
    channel = dataChannel;
    captures.clear();
    offset = null;
    bestRoundTrip = Infinity;
    channel.onopen = () => {
      probe();
      if (!timersStarted) {
        timersStarted = true;
        setInterval(probe, 2000);
        setInterval(report, 1000);
      }
    };
    channel.onmessage = (event) => handle(JSON.parse(event.data));
  }

  function send(message) {
    if (channel && channel.readyState === "open") channel.send(JSON.stringify(message));
  }

  function probe() {
    // Older probes count for less, so the offset follows clock drift.
    bestRoundTrip += 1;
    send({ type: "ping", t: performance.now() });
  }

  function handle(message) {
    switch (message.type) {
      case "stamp":
        if (!layout) video.requestVideoFrameCallback(onFrame);
        layout = message.stamp;
        document.getElementById("glass").textContent =
          "waiting for stamped frames (a hidden tab reads none)";
        break;
      case "frame":
        captures.set(message.index, message.capture);
        if (captures.size > maxCaptures) captures.delete(captures.keys().next().value);
        break;
      case "pong": {
        const now = performance.now();
        const roundTrip = now - message.t;
        if (roundTrip <= bestRoundTrip) {
          bestRoundTrip = roundTrip;
          offset = message.server - (performance.timeOrigin + (message.t + now) / 2);
        }
        break;
      }
    }
  }

  // readStamp returns the frame number in the video's current picture, or
  // -1 when the reference cells or the parity do not match.
  function readStamp() {
    const width = layout.cells * layout.cell;
    canvas.width = width;
    canvas.height = layout.cell;
    context.drawImage(video, layout.x, layout.y, width, layout.cell, 0, 0, width, layout.cell);
    const pixels = context.getImageData(0, 0, width, layout.cell).data;
    const centre = (cell) => {
      const i = 4 * (Math.floor(layout.cell / 2) * width + cell * layout.cell + Math.floor(layout.cell / 2));
      return (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3;
    };

    const white = centre(0);
    const black = centre(1);
    if (white - black < 64) return -1;
    const threshold = (white + black) / 2;
    let value = 0;
    let parity = 0;
    for (let bit = 0; bit < layout.bits; bit++) {
      const one = centre(2 + bit) > threshold;
      value = value * 2 + (one ? 1 : 0);
      if (one) parity ^= 1;
    }
    const paritySet = centre(2 + layout.bits) > threshold;
    return paritySet === (parity === 1) ? value : -1;
  }

  function onFrame(now, metadata) {
    video.requestVideoFrameCallback(onFrame);
    const value = readStamp();
    if (value < 0 || value === lastValue) return;
    lastValue = value;
    decoded++;

    const captured = captures.get(value);
    if (captured === undefined || offset === null) return;
    const displayed = performance.timeOrigin + metadata.expectedDisplayTime + offset;
    const ms = displayed - captured;
    samples.push(ms);
    if (samples.length > windowSize) samples.shift();
    unreported.push(Math.round(ms * 10) / 10);
  }

  function quantile(sorted, q) {
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return sorted[i];
  }

  function summary() {
    if (samples.length === 0) return null;
    const sorted = [...samples].sort((a, b) => a - b);
    return { p50: quantile(sorted, 0.5), p95: quantile(sorted, 0.95), count: sorted.length };
  }

  // report shows the summary and sends new samples to the server, which
  // adds them to /metrics and /api/stats.
  function report() {
    const s = summary();
    if (s) {
      document.getElementById("glass").textContent =
        `p50 ${s.p50.toFixed(0)} ms, p95 ${s.p95.toFixed(0)} ms ` +
        `(${s.count} frames, clock offset ${offset.toFixed(1)} ± ${(bestRoundTrip / 2).toFixed(1)} ms)`;
    }
    if (unreported.length > 0) {
      send({ type: "latency", samples: unreported.slice(-200) });
      unreported = [];
    }
  }

  // samples and reset serve tests and benchmarks that pool several pages.
  return {
    attach,
    summary,
    decodedFrames: () => decoded,
    samples: () => [...samples],
    reset: () => {
      samples.splice(0);
      return samples.length;
    },
  };
})();
