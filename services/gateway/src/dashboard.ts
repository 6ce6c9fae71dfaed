/** Escapes text for HTML. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

/**
 * The live dashboard: one self-contained page (no external assets) fed by `GET /dashboard/events` (SSE, one frame a
 * second). Elements tests read carry `data-testid`.
 */
export function dashboardHtml(names: { limiterName: string; queueName: string }): string {
  // the header names the gateway's own account; with several, the "Per account" card shows each
  return PAGE.replaceAll('{{LIMITER}}', escapeHtml(names.limiterName)).replaceAll('{{QUEUE}}', escapeHtml(names.queueName));
}

const PAGE = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tollgate · {{LIMITER}}</title>
<style>
  :root { --bg:#0d1117; --panel:#161b22; --line:#30363d; --text:#e6edf3; --dim:#8b949e; --accent:#58a6ff; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --fill:#1f6feb; }
  * { box-sizing:border-box; }
  body { margin:0; background:var(--bg); color:var(--text); font:14px/1.4 ui-sans-serif,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
  header { display:flex; align-items:center; gap:16px; padding:16px 24px; border-bottom:1px solid var(--line); }
  header h1 { margin:0; font-size:18px; letter-spacing:.5px; }
  header .names { color:var(--dim); font-family:ui-monospace,Menlo,monospace; font-size:12px; }
  .pill { margin-left:auto; padding:4px 10px; border-radius:999px; font-size:12px; font-weight:600; background:#21262d; color:var(--dim); }
  .pill.live { background:rgba(63,185,80,.15); color:var(--ok); }
  .pill.down { background:rgba(248,81,73,.15); color:var(--bad); }
  .pill.live::before { content:"● "; animation:pulse 2s infinite; }
  @keyframes pulse { 50% { opacity:.3; } }
  main { display:grid; grid-template-columns:repeat(12,1fr); gap:16px; padding:24px; max-width:1400px; margin:0 auto; }
  .card { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:16px 18px; }
  .card h2 { margin:0 0 12px; font-size:12px; text-transform:uppercase; letter-spacing:1px; color:var(--dim); font-weight:600; }
  .span4 { grid-column:span 4; } .span8 { grid-column:span 8; } .span6 { grid-column:span 6; } .span12 { grid-column:span 12; }
  @media (max-width:900px) { .span4,.span6,.span8 { grid-column:span 12; } }
  .big { font-size:44px; font-weight:700; font-variant-numeric:tabular-nums; }
  .big small { font-size:22px; color:var(--dim); font-weight:500; }
  .sub { color:var(--dim); margin-top:4px; font-variant-numeric:tabular-nums; }
  .slots { display:flex; flex-wrap:wrap; gap:4px; margin-top:14px; }
  .slot { width:18px; height:18px; border-radius:4px; background:#21262d; border:1px solid var(--line); transition:background .3s; }
  .slot.on { background:var(--fill); border-color:var(--accent); }
  .slot.off { opacity:.35; }
  canvas { width:100%; height:180px; display:block; }
  .legend { display:flex; gap:16px; color:var(--dim); font-size:12px; margin-top:6px; }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:-1px; }
  .bucket { margin-bottom:14px; }
  .bucket .row { display:flex; justify-content:space-between; font-variant-numeric:tabular-nums; margin-bottom:4px; }
  .bar { height:10px; border-radius:5px; background:#21262d; overflow:hidden; position:relative; }
  .bar > div { height:100%; background:linear-gradient(90deg,var(--fill),var(--accent)); transition:width .6s; }
  .bar > div.debt { background:var(--bad); }
  .pool { margin-bottom:18px; padding-bottom:6px; border-bottom:1px solid #21262d; }
  .pool > .row { display:flex; justify-content:space-between; margin-bottom:8px; font-variant-numeric:tabular-nums; }
  .pool > .row > b { font-family:ui-monospace,Menlo,monospace; color:var(--accent); }
  .tiles { display:grid; grid-template-columns:repeat(5,1fr); gap:10px; }
  .tile { background:#0d1117; border:1px solid var(--line); border-radius:8px; padding:10px; text-align:center; }
  .tile b { display:block; font-size:24px; font-variant-numeric:tabular-nums; }
  .tile span { color:var(--dim); font-size:12px; }
  .tile.failed b { color:var(--bad); } .tile.completed b { color:var(--ok); }
  .kv { display:grid; grid-template-columns:1fr auto; gap:6px 12px; font-variant-numeric:tabular-nums; }
  .kv span:nth-child(odd) { color:var(--dim); }
  .banner { grid-column:span 12; display:none; padding:10px 14px; border-radius:8px; background:rgba(210,153,34,.15); color:var(--warn); border:1px solid rgba(210,153,34,.4); }
  .banner.show { display:block; }
  .zero { color:var(--ok); } .nonzero { color:var(--bad); }
  table.tenants { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
  table.tenants th { text-align:right; color:var(--dim); font-weight:600; font-size:12px; padding:4px 8px; border-bottom:1px solid var(--line); }
  table.tenants td { text-align:right; padding:4px 8px; border-bottom:1px solid #21262d; }
  table.tenants th:first-child, table.tenants td:first-child { text-align:left; font-family:ui-monospace,Menlo,monospace; }
  footer { text-align:center; color:var(--dim); font-size:12px; padding:0 0 24px; }
</style>
</head>
<body>
<header>
  <h1>Tollgate</h1>
  <div class="names">limiter <b>{{LIMITER}}</b> · queue <b>{{QUEUE}}</b></div>
  <div id="status" class="pill" data-testid="status">connecting…</div>
</header>
<main>
  <div id="paused" class="banner" data-testid="paused"></div>
  <section class="card span4">
    <h2>In flight / limit</h2>
    <div class="big"><span data-testid="in-flight">–</span> <small>/ <span data-testid="limit">–</span></small></div>
    <div class="sub" id="limit-note">&nbsp;</div>
    <div class="slots" id="slots"></div>
    <div class="sub" style="margin-top:12px">Waiting for a permit: <b data-testid="waiting">–</b></div>
  </section>
  <section class="card span8">
    <h2>Last two minutes</h2>
    <canvas id="chart" width="900" height="180"></canvas>
    <div class="legend"><span><i style="background:#1f6feb"></i>in flight</span><span><i style="background:#8b949e"></i>limit</span><span><i style="background:#3fb950"></i>jobs/s</span><span><i style="background:#f85149"></i>429s</span></div>
  </section>
  <section class="card span6">
    <h2 id="buckets-title">Token buckets</h2>
    <div id="buckets" data-testid="buckets"><div class="sub">no rate limits configured</div></div>
  </section>
  <section class="card span6">
    <h2>Upstream</h2>
    <div class="kv">
      <span>Throughput</span><b><span data-testid="throughput">0.0</span> jobs/s</b>
      <span>Completed (all time)</span><b data-testid="completed-total">0</b>
      <span>Failed (all time)</span><b data-testid="failed-total">0</b>
      <span>429s (all time)</span><b data-testid="rate-limited" class="zero">0</b>
      <span>429s by kind</span><span id="rate-kinds" style="color:var(--dim)">–</span>
      <span>Answers by status</span><span id="statuses" style="color:var(--dim)">–</span>
    </div>
  </section>
  <section class="card span12">
    <h2>Queue</h2>
    <div class="tiles">
      <div class="tile"><b data-testid="queue-waiting">–</b><span>waiting</span></div>
      <div class="tile"><b data-testid="queue-delayed">–</b><span>delayed (backoff)</span></div>
      <div class="tile"><b data-testid="queue-active">–</b><span>active</span></div>
      <div class="tile completed"><b data-testid="queue-completed">–</b><span>completed</span></div>
      <div class="tile failed"><b data-testid="queue-failed">–</b><span>failed</span></div>
    </div>
  </section>
  <section class="card span12" id="accounts-card" style="display:none">
    <h2>Per account</h2>
    <table class="tenants" data-testid="accounts"><thead><tr><th>account</th><th>in flight</th><th>limit</th><th>waiting for a permit</th><th>queued</th><th>active</th><th>completed</th><th>failed</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="card span12">
    <h2>Per tenant</h2>
    <table class="tenants" data-testid="tenants"><thead><tr><th class="account-column" style="display:none">account</th><th>tenant</th><th>in flight</th><th>waiting</th></tr></thead><tbody></tbody></table>
    <div class="sub" id="tenants-none">no unfinished jobs</div>
  </section>
</main>
<footer>Live over server-sent events, one frame a second · <span id="updated">–</span></footer>
<script>
(() => {
  const $ = (id) => document.querySelector('[data-testid="' + id + '"]') || document.getElementById(id);
  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const fmt = (n) => n === null || n === undefined || Number.isNaN(n) ? '–' : Math.round(n).toLocaleString();
  const frames = [];
  const HISTORY = 120;
  function sum429(totals) { let s = 0; for (const k in totals) if (k.startsWith('rate_limited:')) s += totals[k]; return s; }
  function render(f) {
    const status = $('status');
    status.textContent = f.redis === 'up' ? 'live' : 'Redis unreachable';
    status.className = 'pill ' + (f.redis === 'up' ? 'live' : 'down');
    $('updated').textContent = 'updated ' + new Date(f.atMs).toLocaleTimeString();
    const l = f.limiter;
    if (l) {
      $('in-flight').textContent = fmt(l.inFlight);
      $('limit').textContent = l.concurrency === null ? '∞' : fmt(l.concurrency);
      $('waiting').textContent = fmt(l.waiting);
      $('limit-note').textContent = l.concurrency !== null && l.concurrencyConfigured !== l.concurrency ? 'adaptive: lowered from ' + l.concurrencyConfigured : '\\u00a0';
      const slots = $('slots');
      const n = l.concurrencyConfigured || 0;
      if (slots.children.length !== n) { slots.innerHTML = ''; for (let i = 0; i < n; i++) { const d = document.createElement('div'); d.className = 'slot'; slots.appendChild(d); } }
      [...slots.children].forEach((d, i) => { d.className = 'slot' + (i < l.inFlight ? ' on' : '') + (l.concurrency !== null && i >= l.concurrency ? ' off' : ''); });
      // with pools (DESIGN §9): each pool is held by its own pause or the account's, whichever ends later
      const pools = l.pools || {};
      const poolNames = Object.keys(pools);
      const poolPausedMs = (p) => Math.max(pools[p].pausedUntilMs, l.pausedUntilMs) - l.nowMs;
      const paused = $('paused');
      const pausedMs = l.pausedUntilMs - l.nowMs;
      const pauses = pausedMs > 0 ? ['Fleet paused by an upstream 429 for another ' + (pausedMs / 1000).toFixed(1) + ' s'] : [];
      for (const p of poolNames) if (pausedMs <= 0 && poolPausedMs(p) > 0) pauses.push('Pool ' + p + ' paused by an upstream 429 for another ' + (poolPausedMs(p) / 1000).toFixed(1) + ' s');
      paused.className = 'banner' + (pauses.length ? ' show' : '');
      paused.textContent = pauses.join(' · ');
      const buckets = $('buckets');
      const names = Object.keys(l.buckets);
      const bucketHtml = (name, label) => {
        const b = l.buckets[name];
        const pct = Math.max(0, Math.min(100, 100 * b.tokens / b.capacity));
        const debt = b.tokens < 0;
        const fullIn = b.refillPerSecond > 0 ? Math.max(0, (b.capacity - b.tokens) / b.refillPerSecond) : 0;
        return '<div class="bucket" data-dimension="' + esc(name) + '"><div class="row"><b>' + esc(label) + '</b><span>' + fmt(b.tokens) + ' / ' + fmt(b.capacity) + '</span></div>' +
          '<div class="bar"><div class="' + (debt ? 'debt' : '') + '" style="width:' + (debt ? 100 : pct) + '%"></div></div>' +
          '<div class="sub">' + (debt ? 'in debt · ' : '') + 'refills ' + b.refillPerSecond.toFixed(1) + '/s' + (fullIn > 0.5 ? ' · full in ' + fullIn.toFixed(0) + ' s' : ' · full') + '</div></div>';
      };
      if (poolNames.length) {
        $('buckets-title').textContent = 'Pools and their token buckets';
        buckets.innerHTML = poolNames.map((p) => {
          const ms = poolPausedMs(p);
          const own = names.filter((name) => name.startsWith(p + '/'));
          return '<div class="pool" data-pool="' + esc(p) + '"><div class="row"><b>' + esc(p) + '</b><span>waiting <b data-field="waiting">' + fmt(pools[p].waiting) + '</b> · ' +
            '<span data-field="paused" class="' + (ms > 0 ? 'nonzero' : 'zero') + '">' + (ms > 0 ? 'paused ' + (ms / 1000).toFixed(1) + ' s' : 'not paused') + '</span></span></div>' +
            (own.length ? own.map((name) => bucketHtml(name, name.slice(p.length + 1))).join('') : '<div class="sub">no rate limits configured</div>') + '</div>';
        }).join('');
      } else if (names.length) {
        $('buckets-title').textContent = 'Token buckets';
        buckets.innerHTML = names.map((name) => bucketHtml(name, name)).join('');
      }
    }
    const q = f.queue;
    if (q) {
      $('queue-waiting').textContent = fmt(q.waiting + q.prioritized);
      $('queue-delayed').textContent = fmt(q.delayed);
      $('queue-active').textContent = fmt(q.active);
      $('queue-completed').textContent = fmt(q.completed);
      $('queue-failed').textContent = fmt(q.failed);
    }
    // several accounts (issue 13): one row per account, and the tenants' table names each row's account
    const accounts = f.accounts || [];
    const several = accounts.length > 1;
    $('accounts-card').style.display = several ? '' : 'none';
    for (const th of document.querySelectorAll('.account-column')) th.style.display = several ? '' : 'none';
    // built from text nodes: a name read from Redis is never parsed as HTML
    const row = (data, cells) => {
      const tr = document.createElement('tr');
      Object.assign(tr.dataset, data);
      for (const [field, text] of cells) { const td = document.createElement('td'); td.dataset.field = field; td.textContent = text; tr.appendChild(td); }
      return tr;
    };
    $('accounts').querySelector('tbody').replaceChildren(...accounts.map((a) => row({ account: a.account }, [
      ['account', a.account],
      ['in-flight', a.limiter ? fmt(a.limiter.inFlight) : '–'],
      ['limit', a.limiter ? (a.limiter.concurrency === null ? '∞' : fmt(a.limiter.concurrency)) : '–'],
      ['permit-waiting', a.limiter ? fmt(a.limiter.waiting) : '–'],
      ['queued', a.queue ? fmt(a.queue.waiting + a.queue.prioritized + a.queue.delayed) : '–'],
      ['active', a.queue ? fmt(a.queue.active) : '–'],
      ['completed', fmt(a.totals.completed || 0)],
      ['failed', fmt(a.totals.failed || 0)],
    ])));
    if (f.tenants) {
      $('tenants').querySelector('tbody').replaceChildren(...f.tenants.map((t) =>
        row({ tenant: t.tenant, account: t.account }, [...(several ? [['account', t.account]] : []), ['tenant', t.tenant], ['in-flight', fmt(t.inFlight)], ['waiting', fmt(t.waiting)]])));
      $('tenants-none').style.display = f.tenants.length ? 'none' : '';
    }
    $('throughput').textContent = f.completedPerSecond.toFixed(1);
    $('completed-total').textContent = fmt(f.totals.completed || 0);
    $('failed-total').textContent = fmt(f.totals.failed || 0);
    const r = sum429(f.totals);
    const rl = $('rate-limited'); rl.textContent = fmt(r); rl.className = r ? 'nonzero' : 'zero';
    const kinds = Object.keys(f.totals).filter((k) => k.startsWith('rate_limited:') && f.totals[k]).map((k) => k.slice(13) + ' ' + f.totals[k]);
    $('rate-kinds').textContent = kinds.length ? kinds.join(' · ') : 'none';
    const statuses = Object.keys(f.totals).filter((k) => k.startsWith('upstream:')).map((k) => k.slice(9) + ' × ' + fmt(f.totals[k]));
    $('statuses').textContent = statuses.length ? statuses.join(' · ') : '–';
    draw();
  }
  function draw() {
    const c = $('chart'); const ctx = c.getContext('2d');
    const w = c.width = c.clientWidth * devicePixelRatio; const h = c.height = 180 * devicePixelRatio;
    ctx.clearRect(0, 0, w, h);
    const pts = frames.slice(-HISTORY);
    if (pts.length < 2) return;
    const maxY = Math.max(1, ...pts.map((f) => Math.max(f.limiter ? (f.limiter.concurrencyConfigured || f.limiter.inFlight) : 0, f.completedPerSecond, f.limiter ? f.limiter.inFlight : 0))) * 1.15;
    const x = (i) => (i / (HISTORY - 1)) * w;
    const y = (v) => h - (v / maxY) * h;
    const off = HISTORY - pts.length;
    ctx.strokeStyle = '#30363d'; ctx.lineWidth = 1;
    for (let g = 1; g < 4; g++) { ctx.beginPath(); ctx.moveTo(0, h * g / 4); ctx.lineTo(w, h * g / 4); ctx.stroke(); }
    ctx.beginPath(); ctx.moveTo(x(off), h);
    pts.forEach((f, i) => ctx.lineTo(x(off + i), y(f.limiter ? f.limiter.inFlight : 0)));
    ctx.lineTo(x(off + pts.length - 1), h); ctx.closePath(); ctx.fillStyle = 'rgba(31,111,235,.35)'; ctx.fill();
    const line = (get, color, dash) => { ctx.beginPath(); ctx.setLineDash(dash || []); ctx.strokeStyle = color; ctx.lineWidth = 2 * devicePixelRatio;
      pts.forEach((f, i) => { const v = get(f); if (i === 0) ctx.moveTo(x(off + i), y(v)); else ctx.lineTo(x(off + i), y(v)); }); ctx.stroke(); ctx.setLineDash([]); };
    line((f) => f.limiter ? f.limiter.inFlight : 0, '#58a6ff');
    line((f) => f.limiter && f.limiter.concurrency !== null ? f.limiter.concurrency : 0, '#8b949e', [6, 4]);
    line((f) => f.completedPerSecond, '#3fb950');
    pts.forEach((f, i) => { if (f.rateLimitedDelta > 0) { ctx.fillStyle = '#f85149'; ctx.fillRect(x(off + i) - 2, 0, 4 * devicePixelRatio, h); } });
  }
  function connect() {
    const source = new EventSource('dashboard/events');
    source.addEventListener('history', (e) => { frames.length = 0; frames.push(...JSON.parse(e.data)); if (frames.length) render(frames[frames.length - 1]); });
    source.addEventListener('frame', (e) => { const f = JSON.parse(e.data); frames.push(f); if (frames.length > HISTORY) frames.shift(); document.body.dataset.frames = String(frames.length); render(f); });
    source.onerror = () => { const s = $('status'); s.textContent = 'reconnecting…'; s.className = 'pill down'; };
  }
  window.addEventListener('resize', draw);
  connect();
})();
</script>
</body>
</html>
`;
