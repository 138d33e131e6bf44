// What the browser drivers (whep.mjs, hls.mjs) share on the node side:
// Debian's Chromium launched by playwright-core with a scratch $HOME, the
// one report printed on stdout, the exit codes, and the clean-up on a
// signal or on the driver's own timeout. See README.md.
//
// Exit codes: 0 when the measurement ran (even if nothing played: the
// report says so), 2 on a harness failure (the report has `ok: false` and
// `error`), 3 on the driver's own timeout (`seconds` + 60 s), 64 on bad
// usage (the driver's), 128+N on signal N (the browser closed first).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// Besides what playwright-core always passes (--headless, --no-sandbox,
// --disable-dev-shm-usage, a fresh temporary --user-data-dir it deletes on
// close, ...), listed here so the command line reads on its own.
export const QUIET_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  '--disable-quic',
  // Muted video autoplays anyway; this also covers play() outside a gesture.
  '--autoplay-policy=no-user-gesture-required',
];

// And for the WebRTC drivers (whep.mjs, janus.mjs): the server under test
// listens on 127.0.0.1. With another interface up, Chromium reaches it
// without these two (its checks leave a wildcard-bound socket); on a host
// with only `lo` (a network-less container) it gathers nothing and connects
// only with both: loopback allowed, and host addresses not hidden behind
// *.local mDNS names.
// LocalNetworkAccessChecks: a page served by request interception (the
// janus.js page on Janus's origin) counts as public, and Chromium 156
// then refuses its WebSocket to 127.0.0.1 (ERR_BLOCKED_BY_LOCAL_NETWORK_
// ACCESS_CHECKS). One --disable-features: Chromium reads only the last.
export const WEBRTC_ARGS = [
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks',
];

// What an early exit (signal, timeout) must not leave behind. Cleaning up
// is one promise, shared by whoever asks first: the scratch directory goes
// only once the browser has exited (it writes there while closing).
const live = { browser: null, scratch: null, cleaning: null };

function cleanup(log) {
  live.cleaning ??= (async () => {
    if (live.browser) await live.browser.close().catch((e) => log('close:', String(e)));
    if (live.scratch) rmSync(live.scratch, { recursive: true, force: true });
  })();
  return live.cleaning;
}

// Collects a page's console errors (`text (url)`) and uncaught exceptions
// into `report.console_errors` / `report.page_errors`.
export function watchPage(page, report, prefix = '') {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const at = m.location().url;
    report.console_errors.push(prefix + (at ? `${m.text()} (${at})` : m.text()));
  });
  page.on('pageerror', (e) => report.page_errors.push(prefix + String(e)));
}

// Runs a driver: launches `o.chromium` with `args`, fills `report` (which
// has `ok`, `browser`, `console_errors`, `page_errors`) with what
// `body(browser)` returns, prints it as one JSON line and sets the exit
// code. Signals and the bound (`o.seconds` + 60 s) close the browser first.
export function runDriver({ o, args, report, log }, body) {
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.once(sig, () => {
      log(`${sig}: closing the browser`);
      cleanup(log).finally(() => process.exit(code));
    });
  }
  // A bound on the whole run: a wedged browser must not hang a test.
  setTimeout(() => {
    log('harness timeout');
    cleanup(log).finally(() => process.exit(3));
  }, (o.seconds + 60) * 1000).unref();
  return (async () => {
    const started = performance.now();
    // playwright-core makes (and deletes) a fresh profile per launch under
    // $TMPDIR; this scratch HOME keeps what Chromium writes beside it (crash
    // report settings, ~/.pki, dconf) out of the real $HOME.
    live.scratch = mkdtempSync(join(tmpdir(), 'framebus-chromium-'));
    const home = live.scratch;
    let code = 0;
    try {
      live.browser = await chromium.launch({
        executablePath: o.chromium,
        headless: true,
        args,
        env: { ...process.env, HOME: home, XDG_CONFIG_HOME: home, XDG_CACHE_HOME: home },
        timeout: 30000,
        // Ours above: close the browser and remove the scratch directory.
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
      });
      report.browser = live.browser.version();
      Object.assign(report, await body(live.browser));
      report.ok = true;
    } catch (e) {
      report.error = String(e && e.stack ? e.stack : e);
      log('harness failure:', report.error);
      code = 2;
    } finally {
      await cleanup(log);
    }
    report.elapsed_ms = Math.round(performance.now() - started);
    process.stdout.write(JSON.stringify(report) + '\n');
    process.exitCode = code;
  })();
}
