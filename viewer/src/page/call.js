// A call's page: every station's PRE and POST lanes on one UTC time axis, drawn from the
// server's peaks; the pair figures and alarms per bucket; playback of either tap from any
// point, switching between them while playing; downloads of a tap or a time range. Polls the
// call while it is being recorded and redraws when segments are published.
'use strict';

const callName = location.pathname.split('/')[2];
const api = '/api/calls/' + callName;
const POLL_MS = 2000;
const TAPS = ['PRE', 'POST'];
const COLORS = { PRE: '#2a6fdb', POST: '#1a9850' };

const $ = (id) => document.getElementById(id);
const tracks = $('tracks');
const stationsBox = $('stations');
const cursorBox = $('cursor');
const selectionBox = $('selection');
const statusBox = $('status');

let call = null;          // the call's JSON
let pairs = new Map();    // station id -> its pairs
let view = null;          // { from, to } in ms: what the lanes show
let cursorMs = null;      // where playback starts
let selection = null;     // [from, to] in ms
let playing = null;       // { station, tap, audio }
const lanes = [];         // { station, tap, canvas }
const audios = new Map(); // "station tap" -> <audio>

// How long the first paint took, for whoever asks (the tests do).
window.viewTimings = { start: performance.now() };

function el(tag, props, children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children || []) e.append(c);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function utc(ms, withMs) {
  const iso = new Date(ms).toISOString();
  return withMs ? iso.slice(11, 23) : iso.slice(11, 19);
}

function fmt(x, digits) {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

// Pixel x of time ms in a canvas of width w, and back.
const xOf = (ms, w) => ((ms - view.from) / (view.to - view.from)) * w;
const msOf = (x, w) => view.from + (x / w) * (view.to - view.from);

function sizeCanvas(canvas) {
  const w = Math.max(1, Math.round(canvas.clientWidth * devicePixelRatio));
  const h = Math.max(1, Math.round(canvas.clientHeight * devicePixelRatio));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  return [w, h];
}

function drawAxis() {
  const canvas = $('axis');
  const [w, h] = sizeCanvas(canvas);
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, w, h);
  const span = view.to - view.from;
  const steps = [100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5];
  const step = steps.find((s) => (s / span) * w >= 90 * devicePixelRatio) || 36e5;
  g.fillStyle = '#444';
  g.strokeStyle = '#999';
  g.font = 11 * devicePixelRatio + 'px system-ui, sans-serif';
  for (let t = Math.ceil(view.from / step) * step; t <= view.to; t += step) {
    const x = Math.round(xOf(t, w)) + 0.5;
    g.beginPath();
    g.moveTo(x, h * 0.6);
    g.lineTo(x, h);
    g.stroke();
    g.fillText(utc(t, step < 1000), x + 3, h * 0.55);
  }
}

// One lane: what is known of the tap's segments, then the waveform on top.
function drawLane(lane, peaks) {
  const [w, h] = sizeCanvas(lane.canvas);
  const g = lane.canvas.getContext('2d');
  const tap = call.stations.find((s) => s.id === lane.station).taps[lane.tap];
  const band = (a, b, color) => {
    const x0 = Math.max(0, xOf(a, w));
    const x1 = Math.min(w, xOf(b, w));
    if (x1 > x0) {
      g.fillStyle = color;
      g.fillRect(x0, 0, Math.max(1, x1 - x0), h);
    }
  };
  g.fillStyle = '#fff';
  g.fillRect(0, 0, w, h);
  if (tap['start-ms'] === null) {
    band(view.from, view.to, 'rgba(0,0,0,0.04)');
  } else {
    band(view.from, tap['start-ms'], 'rgba(0,0,0,0.04)');
    band(tap['end-ms'], view.to, 'rgba(0,0,0,0.04)');
  }
  for (const [a, b] of tap['holes-ms']) band(a, b, 'rgba(220,40,40,0.25)');
  const bucketPx = (call['segment-duration-ms'] / (view.to - view.from)) * w;
  for (const s of tap.segments) {
    const start = s['bucket-ts-ms'];
    const end = start + (s['duration-ms'] || call['segment-duration-ms']);
    if (end < view.from || start > view.to) continue;
    if (s.error) band(start, end, 'rgba(200,0,0,0.5)');
    else if (s.silent) band(start, end, 'rgba(0,0,0,0.08)');
    // Digital silence: a bar along the bottom, and the whole height where it lasts.
    for (const [a, b] of s['zero-runs-ms'] || []) {
      const x0 = Math.max(0, xOf(start + a, w));
      const x1 = Math.min(w, xOf(start + b, w));
      if (x1 <= x0) continue;
      g.fillStyle = 'rgba(255,160,0,0.9)';
      g.fillRect(x0, h - 4 * devicePixelRatio, Math.max(1, x1 - x0), 4 * devicePixelRatio);
      if (b - a >= 200) band(start + a, start + b, 'rgba(255,160,0,0.3)');
    }
  }
  // The waveform: one vertical line per column from its lowest to its highest sample.
  g.fillStyle = COLORS[lane.tap];
  const mid = h / 2;
  const scale = h / 2 / 32768;
  const cols = peaks.columns;
  const colW = w / cols;
  for (let i = 0; i < cols; i++) {
    const lo = peaks.min[i];
    const hi = peaks.max[i];
    if (lo === 0 && hi === 0) continue;
    const y0 = mid - hi * scale;
    g.fillRect(i * colW, y0, Math.max(1, colW), Math.max(1, mid - lo * scale - y0));
  }
  g.fillStyle = 'rgba(0,0,0,0.15)';
  g.fillRect(0, Math.floor(mid), w, 1);
  // Bucket boundaries, where they are far enough apart to be told apart.
  if (bucketPx >= 4) {
    g.fillStyle = 'rgba(0,0,0,0.18)';
    const d = call['segment-duration-ms'];
    for (let t = Math.ceil(view.from / d) * d; t < view.to; t += d) g.fillRect(Math.round(xOf(t, w)), 0, 1, h);
  }
  // A bucket's further files (a re-anchor, a call boundary): a mark at the bucket's start.
  g.fillStyle = '#b000b0';
  for (const s of tap.segments) {
    if (s['file-index'] === 0) continue;
    const x = xOf(s['bucket-ts-ms'], w);
    if (x < 0 || x > w) continue;
    g.beginPath();
    g.moveTo(x, 0);
    g.lineTo(x + 7 * devicePixelRatio, 0);
    g.lineTo(x, 9 * devicePixelRatio);
    g.fill();
  }
}

async function drawLanes() {
  drawAxis();
  const width = (c) => Math.max(1, Math.round(c.clientWidth * devicePixelRatio));
  const peaks = await Promise.all(lanes.map((lane) => getJSON(
    api + '/peaks?station=' + encodeURIComponent(lane.station) + '&tap=' + lane.tap +
      '&from=' + Math.floor(view.from) + '&to=' + Math.ceil(view.to) + '&columns=' + width(lane.canvas))));
  const fetched = performance.now();
  lanes.forEach((lane, i) => drawLane(lane, peaks[i]));
  drawFigures();
  placeOverlays();
  return fetched;
}

// The pair figures of each bucket, as a strip above the station's lanes.
function drawFigures() {
  for (const st of call.stations) {
    const strip = document.querySelector('.figs[data-station="' + CSS.escape(st.id) + '"]');
    if (!strip) continue;
    strip.replaceChildren();
    const rows = (pairs.get(st.id) || { pairs: [] }).pairs;
    const d = call['segment-duration-ms'];
    const w = strip.clientWidth;
    for (const p of rows) {
      const a = p['bucket-ts-ms'];
      if (a + d < view.from || a > view.to) continue;
      const x0 = xOf(a, w);
      const x1 = xOf(a + d, w);
      const measured = p.alignment === 'measured';
      const hue = measured ? Math.round(120 * Math.max(0, p.correlation)) : 0;
      const box = el('div', {
        className: 'fig' + (p.alarms.length ? ' alarm' : ''),
        title: utc(a) + 'Z' + (p['file-index'] ? ' (file ' + p['file-index'] + ')' : '') + '\n' +
          (measured
            ? 'delay ' + fmt(p['delay-ms'], 1) + ' ms, gain ' + fmt(p['gain-db'], 1) + ' dB, correlation ' + fmt(p.correlation, 3)
            : p.alignment + ', level change ' + fmt(p['gain-db'], 1) + ' dB') +
          '\nPRE ' + fmt(p['pre-rms-dbfs'], 1) + ' dBFS, POST ' + fmt(p['post-rms-dbfs'], 1) + ' dBFS' +
          (p.alarms.length ? '\nalarms: ' + p.alarms.join(', ') : ''),
        textContent: x1 - x0 > 70 ? fmt(p['delay-ms'], 0) + 'ms ' + fmt(p['gain-db'], 1) + 'dB' : '',
      });
      box.dataset.bucket = a;
      box.style.left = x0 + 'px';
      box.style.width = Math.max(1, x1 - x0) + 'px';
      box.style.background = measured ? 'hsl(' + hue + ',60%,82%)' : '#e4e4e4';
      strip.append(box);
    }
  }
  showAtCursor();
}

function showAtCursor() {
  const out = [];
  if (cursorMs !== null) {
    const d = call['segment-duration-ms'];
    const bucket = Math.floor(cursorMs / d) * d;
    for (const st of call.stations) {
      const p = (pairs.get(st.id) || { pairs: [] }).pairs.find((q) => q['bucket-ts-ms'] === bucket);
      if (p) {
        out.push(st['station-key'] + ': ' + (p.alignment === 'measured'
          ? 'delay ' + fmt(p['delay-ms'], 1) + ' ms, gain ' + fmt(p['gain-db'], 1) + ' dB, corr ' + fmt(p.correlation, 2)
          : p.alignment) + (p.alarms.length ? ' [' + p.alarms.join(', ') + ']' : ''));
      }
    }
  }
  $('at-cursor').textContent = out.join(' · ');
}

// The cursor and the selection, over every lane.
function placeOverlays() {
  const canvas = $('axis');
  const left = canvas.offsetLeft;
  const w = canvas.clientWidth;
  cursorBox.hidden = cursorMs === null || cursorMs < view.from || cursorMs > view.to;
  if (!cursorBox.hidden) cursorBox.style.left = left + xOf(cursorMs, w) + 'px';
  selectionBox.hidden = selection === null;
  if (selection) {
    const x0 = Math.max(0, xOf(selection[0], w));
    const x1 = Math.min(w, xOf(selection[1], w));
    selectionBox.style.left = left + x0 + 'px';
    selectionBox.style.width = Math.max(0, x1 - x0) + 'px';
  }
  $('zoom').disabled = selection === null;
  $('position').textContent = cursorMs === null ? 'Click a lane to place the cursor' : 'Cursor ' + utc(cursorMs, true) + 'Z' +
    (selection ? ' · selected ' + utc(selection[0], true) + '–' + utc(selection[1], true) : '');
  updateDownloads();
}

function audioUrl(station, tap, range) {
  let url = api + '/audio?station=' + encodeURIComponent(station) + '&tap=' + tap;
  if (range) url += '&from=' + Math.floor(range[0]) + '&to=' + Math.ceil(range[1]);
  return url;
}

function updateDownloads() {
  for (const a of document.querySelectorAll('a.download')) {
    a.href = audioUrl(a.dataset.station, a.dataset.tap, selection) + '&download=1';
    a.title = selection ? 'WAV of the selected time range' : 'WAV of the whole tap, holes as silence';
  }
}

// The server answers at most two hours of audio at once. A call no longer than that plays as
// one piece from its start, so that PRE and POST of a moment are at the same currentTime; a
// longer one in windows of half an hour, each starting on a ten-minute mark of the call before
// the moment asked for (both taps of a moment, and plays close to each other, share one),
// played one after the other.
const MAX_AUDIO_MS = 2 * 3600e3;
const WINDOW_MS = 1800e3;
const WINDOW_STEP_MS = 600e3;

// The time range of audio that holds `ms`.
function windowAt(ms) {
  const start = call['start-ms'];
  const end = call['end-ms'];
  if (end - start <= MAX_AUDIO_MS) return [start, end];
  const into = Math.min(Math.max(ms, start), end - 1) - start;
  const from = start + Math.floor(into / WINDOW_STEP_MS) * WINDOW_STEP_MS;
  return [from, Math.min(end, from + WINDOW_MS)];
}

// A tap's <audio> element, given the window that holds `ms` unless it is playing; its
// data-from and data-to say which window it holds.
function audioFor(station, tap, ms) {
  const key = station + ' ' + tap;
  let audio = audios.get(key);
  if (!audio) {
    audio = el('audio', { preload: 'none' });
    audio.dataset.station = station;
    audio.dataset.tap = tap;
    audio.addEventListener('ended', () => {
      if (!playing || playing.audio !== audio) return;
      // The end of a window before the call's: on with the next one.
      const to = Number(audio.dataset.to);
      if (to < call['end-ms']) play(station, tap, to);
      else stop();
    });
    audio.addEventListener('error', () => {
      statusBox.textContent = 'Cannot play ' + tap + ': the audio could not be loaded';
    });
    document.body.append(audio);
    audios.set(key, audio);
  }
  const range = windowAt(ms);
  const src = audioUrl(station, tap, range);
  if (audio.getAttribute('src') !== src && audio.paused) {
    audio.src = src;
    audio.dataset.from = range[0];
    audio.dataset.to = range[1];
  }
  return audio;
}

// Where the playing tap is, in ms.
function playingMs() {
  return Number(playing.audio.dataset.from) + playing.audio.currentTime * 1000;
}

function startAt(audio, seconds) {
  const go = () => {
    audio.currentTime = seconds;
    audio.play().catch((e) => { statusBox.textContent = 'Cannot play: ' + e.message; });
  };
  if (audio.readyState >= 1) go();
  else audio.addEventListener('loadedmetadata', go, { once: true });
  if (audio.readyState === 0 && audio.networkState !== HTMLMediaElement.NETWORK_LOADING) audio.load();
}

function stop() {
  if (playing) playing.audio.pause();
  playing = null;
  markButtons();
}

// Plays a tap from `atMs`, else from where the playing one is, else from the cursor.
function play(station, tap, atMs) {
  const ms = atMs ?? (playing ? playingMs() : (cursorMs ?? call['start-ms']));
  if (playing) playing.audio.pause();
  const audio = audioFor(station, tap, ms);
  playing = { station, tap, audio };
  startAt(audio, Math.max(0, (ms - Number(audio.dataset.from)) / 1000));
  markButtons();
  requestAnimationFrame(follow);
}

function switchTap(station) {
  const tap = playing && playing.station === station ? (playing.tap === 'PRE' ? 'POST' : 'PRE') : 'PRE';
  play(station, tap);
}

function markButtons() {
  for (const b of document.querySelectorAll('button.play')) {
    b.classList.toggle('on', !!playing && playing.station === b.dataset.station && playing.tap === b.dataset.tap);
  }
}

// The cursor follows playback.
function follow() {
  if (!playing) return;
  cursorMs = playingMs();
  placeOverlays();
  showAtCursor();
  requestAnimationFrame(follow);
}

// The taps of a station that have files: only those can be played or downloaded.
const tapsOf = (st) => TAPS.filter((tap) => st.taps[tap]['start-ms'] !== null);

// What the station blocks are built from: the stations and which of their taps have files.
const layoutOf = (c) => c.stations.map((st) => st.id + ' ' + tapsOf(st).join('+')).join('\n');

function buildStations() {
  stationsBox.replaceChildren();
  lanes.length = 0;
  for (const st of call.stations) {
    const present = tapsOf(st);
    const buttons = [];
    for (const tap of present) {
      const b = el('button', { type: 'button', className: 'play', textContent: '▶ ' + tap, title: 'Play ' + tap + ' from the cursor' });
      b.dataset.station = st.id;
      b.dataset.tap = tap;
      b.addEventListener('click', () => play(st.id, tap));
      buttons.push(b);
    }
    const sw = el('button', { type: 'button', className: 'switch', textContent: '⇄ PRE/POST', title: 'Switch to the other tap at the same moment' });
    sw.addEventListener('click', () => switchTap(st.id));
    const stopB = el('button', { type: 'button', textContent: '■', title: 'Stop' });
    stopB.addEventListener('click', stop);
    const downloads = present.map((tap) => {
      const a = el('a', { className: 'download', textContent: '⤓ ' + tap + ' WAV' });
      a.dataset.station = st.id;
      a.dataset.tap = tap;
      return a;
    });
    const figs = el('div', { className: 'figs', title: 'What the stage did, bucket by bucket' });
    figs.dataset.station = st.id;
    const block = el('div', { className: 'station' }, [
      el('div', { className: 'station-head' }, [el('b', { textContent: st['station-key'] }), ...buttons,
        ...(present.length === TAPS.length ? [sw] : []), stopB, ...downloads]),
      el('div', { className: 'row' }, [el('div', { className: 'label', textContent: 'stage' }), figs]),
    ]);
    block.dataset.station = st.id;
    for (const tap of TAPS) {
      const canvas = el('canvas', { className: 'lane' });
      canvas.dataset.station = st.id;
      canvas.dataset.tap = tap;
      block.append(el('div', { className: 'row lane-' + tap.toLowerCase() }, [el('div', { className: 'label', textContent: tap }), canvas]));
      lanes.push({ station: st.id, tap, canvas });
      listen(canvas);
    }
    stationsBox.append(block);
  }
  updateDownloads();
}

// Click: place the cursor (and move playback there); drag: select a time range.
function listen(canvas) {
  let down = null;
  canvas.addEventListener('mousedown', (ev) => { down = ev.offsetX; });
  canvas.addEventListener('mousemove', (ev) => {
    if (down === null || Math.abs(ev.offsetX - down) < 4) return;
    const w = canvas.clientWidth;
    const a = msOf(Math.min(down, ev.offsetX), w);
    const b = msOf(Math.max(down, ev.offsetX), w);
    selection = [a, b];
    placeOverlays();
  });
  canvas.addEventListener('mouseup', (ev) => {
    if (down !== null && Math.abs(ev.offsetX - down) < 4) {
      cursorMs = msOf(ev.offsetX, canvas.clientWidth);
      selection = null;
      if (playing) {
        // Within what the playing tap holds, a seek; elsewhere, its window there.
        const from = Number(playing.audio.dataset.from);
        if (cursorMs >= from && cursorMs < Number(playing.audio.dataset.to)) {
          playing.audio.currentTime = (cursorMs - from) / 1000;
        } else {
          play(playing.station, playing.tap, cursorMs);
        }
      }
      placeOverlays();
      showAtCursor();
    }
    down = null;
  });
}

// The pairs as far as the server has compared them; it compares the rest meanwhile.
async function loadPairs() {
  try {
    const body = await getJSON(api + '/pairs');
    pairs = new Map(body.stations.map((s) => [s.id, s]));
    drawFigures();
    if (body.stations.some((s) => s.pending > 0)) setTimeout(loadPairs, 1000);
  } catch (e) {
    statusBox.textContent = 'Cannot compare the pairs: ' + e.message;
  }
}

function showHeader() {
  document.title = call['trace-id'] + ' — segmentrecorder-view';
  $('title').textContent = call['trace-id'];
  $('span').textContent = call['start-utc'].replace('T', ' ') + ' – ' + call['end-utc'].slice(11) +
    ' · ' + call.stations.length + ' station' + (call.stations.length === 1 ? '' : 's');
}

async function poll() {
  try {
    const fresh = await getJSON(api);
    statusBox.textContent = '';
    if (fresh.version !== call.version) {
      const following = view.to >= call['end-ms'];
      const sameStations = layoutOf(fresh) === layoutOf(call);
      const oldFrom = call['start-ms'];
      call = fresh;
      if (following) view = { from: view.from === oldFrom ? call['start-ms'] : view.from, to: call['end-ms'] };
      showHeader();
      if (!sameStations) buildStations();
      await drawLanes();
      document.body.dataset.version = call.version;
      loadPairs();
    }
  } catch (e) {
    statusBox.textContent = 'Lost the server: ' + e.message;
  }
  setTimeout(poll, POLL_MS);
}

async function main() {
  try {
    call = await getJSON(api);
  } catch (e) {
    statusBox.textContent = 'Cannot load the call: ' + e.message;
    return;
  }
  window.viewTimings.call = performance.now();
  view = { from: call['start-ms'], to: call['end-ms'] };
  showHeader();
  buildStations();
  const fetched = await drawLanes();
  const t = window.viewTimings;
  t.peaks = fetched;
  t.painted = performance.now();
  t.paintMs = t.painted - fetched;
  t.totalMs = t.painted - t.start;
  document.body.dataset.painted = 'yes';
  document.body.dataset.version = call.version;
  $('whole').addEventListener('click', () => {
    view = { from: call['start-ms'], to: call['end-ms'] };
    drawLanes();
  });
  $('zoom').addEventListener('click', () => {
    if (!selection) return;
    view = { from: selection[0], to: selection[1] };
    selection = null;
    drawLanes();
  });
  window.addEventListener('resize', () => drawLanes());
  loadPairs();
  setTimeout(poll, POLL_MS);
}

main();
