// The index: the calls of each day, newest first, with a search box for the trace id. The
// alarms of each call come from its pairs, fetched one call after the other.
'use strict';

const days = document.getElementById('days');
const search = document.getElementById('search');
const status = document.getElementById('status');

function el(tag, props, children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children || []) e.append(c);
  return e;
}

function time(iso) {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

// A call's name in a URL path: its directory name percent-encoded, `%` included, so that each
// directory has one URL (`%2E`, the directory of `.`, is `%252E`; `%252E`, that of `%2E`, is
// `%25252E`) and no URL parser takes one for a dot segment.
function urlName(id) {
  return encodeURIComponent(id);
}

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function filter() {
  const q = search.value.trim().toLowerCase();
  for (const row of document.querySelectorAll('tr.call')) {
    row.hidden = q !== '' && !row.dataset.trace.toLowerCase().includes(q);
  }
  for (const day of document.querySelectorAll('section.day')) {
    day.hidden = day.querySelectorAll('tr.call:not([hidden])').length === 0;
  }
}

async function load() {
  let list;
  try {
    list = (await getJSON('/api/calls')).calls;
  } catch (e) {
    status.textContent = 'Cannot list the calls: ' + e.message;
    return;
  }
  if (list.length === 0) {
    days.append(el('p', { textContent: 'No calls recorded here yet.' }));
    return;
  }
  // A call belongs to the day its last bucket starts on; calls come newest first, day by day.
  const byDay = new Map();
  for (const c of list) {
    const day = c.day;
    if (!byDay.has(day)) byDay.set(day, []);
    byDay.get(day).push(c);
  }
  const alarmCells = [];
  for (const [day, calls] of byDay) {
    const head = el('tr', {}, ['Trace id', 'First (UTC)', 'Last (UTC)', 'Stations', 'Segments', 'Alarms']
      .map((h) => el('th', { textContent: h })));
    const rows = calls.map((c) => {
      const alarms = el('td', { className: 'alarms', textContent: '…' });
      alarmCells.push([c.id, alarms]);
      const row = el('tr', { className: 'call' }, [
        el('td', {}, [el('a', { href: '/call/' + urlName(c.id), textContent: c['trace-id'] })]),
        el('td', { textContent: time(c['first-utc']) }),
        el('td', { textContent: time(c['last-utc']) }),
        el('td', { textContent: c.stations.join(', ') }),
        el('td', { className: 'num', textContent: String(c.segments) }),
        alarms,
      ]);
      row.dataset.trace = c['trace-id'];
      return row;
    });
    days.append(el('section', { className: 'day' }, [
      el('h2', { textContent: day }),
      el('table', {}, [el('thead', {}, [head]), el('tbody', {}, rows)]),
    ]));
  }
  const q = new URLSearchParams(location.search).get('q');
  if (q) search.value = q;
  filter();
  for (const [id, cell] of alarmCells) {
    try {
      // The server compares a call's pairs in the background: ask until none is pending.
      const url = '/api/calls/' + urlName(id) + '/pairs';
      let pairs = await getJSON(url);
      while (pairs.stations.some((s) => s.pending > 0)) {
        await new Promise((done) => setTimeout(done, 1000));
        pairs = await getJSON(url);
      }
      const names = [];
      for (const s of pairs.stations) {
        for (const p of s.pairs) for (const a of p.alarms) names.push(s['station-key'] + ': ' + a);
      }
      cell.textContent = names.length ? names.length + ' (' + [...new Set(names)].join(', ') + ')' : '0';
    } catch (e) {
      cell.textContent = '?';
      cell.title = e.message;
    }
  }
}

search.addEventListener('input', filter);
search.addEventListener('keydown', (ev) => {
  if (ev.key !== 'Enter') return;
  const shown = [...document.querySelectorAll('tr.call:not([hidden]) a')];
  if (shown.length === 1) location.href = shown[0].href;
});
load();
