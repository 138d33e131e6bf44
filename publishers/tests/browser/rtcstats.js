// The receiving side of an RTCPeerConnection as getStats() reports it, read
// in a page (a page script, not a module): the WebRTC drivers (whep.mjs,
// janus.mjs) load it into their pages (page.addScriptTag / addInitScript)
// before their own harness, so that every WebRTC viewer is reported one way
// (the `inbound`, `rtt_ms`, `local_candidate`, `remote_candidate` fields of
// README.md).
// - framebusRtcStats.inboundStats(pc) resolves to { inbound, rtt_ms,
//   local_candidate, remote_candidate }, `inbound` null before any video
//   RTP arrived.
globalThis.framebusRtcStats = (() => {
  // The receiving side of `pc` as getStats() reports it; null before any
  // video RTP arrived.
  async function inboundStats(pc) {
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const all = [...byId.values()];
    const inb = all.find((s) => s.type === 'inbound-rtp' && s.kind === 'video');
    const transport = all.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    const pair = transport
      ? byId.get(transport.selectedCandidatePairId)
      : all.find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    const rtt_ms = pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null;
    const local = pair ? byId.get(pair.localCandidateId) : undefined;
    const remote = pair ? byId.get(pair.remoteCandidateId) : undefined;
    const cand = (c) => (c ? `${c.address ?? c.ip}:${c.port}/${c.protocol} ${c.candidateType}` : null);
    if (!inb) return { inbound: null, rtt_ms, local_candidate: cand(local), remote_candidate: cand(remote) };
    const codec = inb.codecId ? byId.get(inb.codecId) : undefined;
    const n = (x) => (x === undefined ? null : x);
    return {
      inbound: {
        frames_decoded: n(inb.framesDecoded),
        frames_received: n(inb.framesReceived),
        frames_dropped: n(inb.framesDropped),
        frame_width: n(inb.frameWidth),
        frame_height: n(inb.frameHeight),
        frames_per_second: n(inb.framesPerSecond),
        freeze_count: n(inb.freezeCount),
        total_freezes_duration_s: n(inb.totalFreezesDuration),
        pause_count: n(inb.pauseCount),
        packets_lost: n(inb.packetsLost),
        // RTP interarrival jitter (RFC 3550), ms.
        jitter_ms: inb.jitter === undefined ? null : inb.jitter * 1000,
        packets_received: n(inb.packetsReceived),
        nack_count: n(inb.nackCount),
        pli_count: n(inb.pliCount),
        fir_count: n(inb.firCount),
        jitter_buffer_ms: inb.jitterBufferEmittedCount
          ? (inb.jitterBufferDelay / inb.jitterBufferEmittedCount) * 1000
          : null,
        decoder_implementation: n(inb.decoderImplementation),
        codec: codec ? codec.mimeType : null,
        sdp_fmtp_line: codec ? n(codec.sdpFmtpLine) : null,
      },
      rtt_ms,
      local_candidate: cand(local),
      remote_candidate: cand(remote),
    };
  }

  return { inboundStats };
})();
