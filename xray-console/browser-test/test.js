// Headless Chromium test of xray-console: open the map, click a node, follow to its
// traces, open a trace, see the bottleneck row. Saves screenshots to
// $XRAY_CONSOLE_SHOTS (run.sh: under the cargo target directory).
//
// Starts the console binary itself on 127.0.0.1 ephemeral ports, sends it the captured
// SDK datagrams and a few generated multi-service traces over UDP. Talks only to
// 127.0.0.1; uses the system Chromium (never downloads a browser).
'use strict';

const { chromium } = require('playwright-core');
const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const assert = require('node:assert');

const here = __dirname;
const bin = process.env.XRAY_CONSOLE_BIN || path.join(here, '..', '..', 'target', 'debug', 'xray-console');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const docs = process.env.XRAY_CONSOLE_SHOTS || path.join(here, '..', '..', 'target', 'xray-console-screenshots');
const fixtures = path.join(here, '..', 'tests', 'fixtures');

let passed = 0;
let failed = 0;
async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n  ${String(e && e.stack || e).split('\n').join('\n  ')}`);
    throw e;
  }
}

function startConsole() {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--udp', '127.0.0.1:0', '--http', '127.0.0.1:0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const timer = setTimeout(() => reject(new Error('console did not start: ' + err)), 15000);
    child.stderr.on('data', (d) => {
      err += d;
      const m = /udp:\/\/([\d.]+):(\d+).*http:\/\/([\d.]+):(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, udpPort: Number(m[2]), http: `http://127.0.0.1:${m[4]}` });
      }
    });
    child.on('exit', (c) => reject(new Error(`console exited ${c}: ${err}`)));
  });
}

const hex = (n) => crypto.randomBytes(n).toString('hex');
const header = '{"format":"json","version":1}\n';

// A small shop: web-frontend (EC2) -> orders-api (ECS) -> DynamoDB / SQS / S3, and a
// payments API that sometimes throttles or fails.
function demoTraces(count) {
  const docs = [];
  const now = Date.now() / 1000;
  for (let i = 0; i < count; i++) {
    const t0 = now - 240 + i * (230 / count);
    const traceId = `1-${Math.floor(t0).toString(16)}-${hex(12)}`;
    const front = hex(8), callOrders = hex(8), orders = hex(8), callPay = hex(8);
    const slowDb = 0.045 + (i % 5) * 0.01;
    const payStatus = i % 9 === 4 ? 429 : i % 11 === 7 ? 500 : 200;
    const ordersEnd = t0 + 0.02 + slowDb + 0.01;
    docs.push({
      trace_id: traceId, id: orders, parent_id: callOrders, name: 'orders-api',
      origin: 'AWS::ECS::Container', start_time: t0 + 0.012, end_time: ordersEnd,
      http: { request: { method: 'GET', url: `http://orders-api/orders/${100 + i}` }, response: { status: 200 } },
      annotations: { customer: i % 2 ? 'acme' : 'globex', order_id: 100 + i },
      subsegments: [
        { id: hex(8), name: 'DynamoDB', namespace: 'aws', start_time: t0 + 0.015, end_time: t0 + 0.015 + slowDb,
          aws: { operation: 'Query', table_name: 'orders', region: 'eu-west-1' }, http: { response: { status: 200 } } },
        { id: hex(8), name: 'SQS', namespace: 'aws', start_time: t0 + 0.016 + slowDb, end_time: t0 + 0.02 + slowDb,
          aws: { operation: 'SendMessage', queue_url: 'https://sqs.eu-west-1.amazonaws.com/123456789012/order-events' } },
        { id: hex(8), name: 'S3', namespace: 'aws', start_time: t0 + 0.02 + slowDb, end_time: t0 + 0.026 + slowDb,
          aws: { operation: 'PutObject', bucket_name: 'receipts' } },
      ],
    });
    const payEnd = ordersEnd + 0.002 + 0.03;
    const pay = { id: callPay, name: 'payments.example.com', namespace: 'remote', start_time: ordersEnd + 0.002, end_time: payEnd,
      http: { request: { method: 'POST', url: 'https://payments.example.com/charge' }, response: { status: payStatus } } };
    if (payStatus === 429) { pay.throttle = true; pay.error = true; }
    if (payStatus === 500) {
      pay.fault = true;
      pay.cause = { working_directory: '/srv/web', exceptions: [{ id: hex(8), type: 'PaymentError', message: 'upstream 500', remote: true,
        stack: [{ path: 'web/pay.js', line: 42, label: 'charge' }, { path: 'web/app.js', line: 7, label: 'checkout' }] }] };
    }
    const status = payStatus === 500 ? 502 : payStatus === 429 ? 429 : 200;
    const seg = {
      trace_id: traceId, id: front, name: 'web-frontend', origin: 'AWS::EC2::Instance',
      start_time: t0, end_time: payEnd + 0.004,
      http: { request: { method: 'POST', url: `https://shop.example.com/checkout/${i}`, client_ip: '127.0.0.1' }, response: { status } },
      annotations: { customer: i % 2 ? 'acme' : 'globex', cart_items: 1 + (i % 4) },
      metadata: { default: { cart: { items: 1 + (i % 4), currency: 'EUR' } } },
      subsegments: [
        { id: callOrders, name: 'orders-api', namespace: 'remote', start_time: t0 + 0.01, end_time: ordersEnd + 0.001,
          http: { request: { method: 'GET', url: `http://orders-api/orders/${100 + i}`, traced: true }, response: { status: 200 } } },
        pay,
      ],
    };
    if (status === 429) { seg.throttle = true; seg.error = true; }
    if (status === 502) seg.fault = true;
    docs.push(seg);
  }
  return docs;
}

async function sendUdp(port, payloads) {
  const sock = dgram.createSocket('udp4');
  for (const p of payloads) {
    await new Promise((res, rej) => sock.send(p, port, '127.0.0.1', (e) => (e ? rej(e) : res())));
    await new Promise((res) => setTimeout(res, 2));
  }
  sock.close();
}

async function main() {
  fs.mkdirSync(docs, { recursive: true });
  const { child, udpPort, http } = await startConsole();
  let browser;
  try {
    const captured = fs.readdirSync(fixtures).filter((f) => f.endsWith('.datagram')).sort()
      .map((f) => fs.readFileSync(path.join(fixtures, f)));
    const demo = demoTraces(24).map((d) => Buffer.from(header + JSON.stringify(d)));
    await sendUdp(udpPort, [...captured, ...demo, Buffer.from('not a datagram')]);
    const expected = captured.length + demo.length + 1;
    for (let i = 0; i < 200; i++) {
      const s = await (await fetch(`${http}/api/stats`)).json();
      if (s.intake.datagrams >= expected) break;
      await new Promise((r) => setTimeout(r, 25));
    }

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run'],
    });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    // The page must work offline: fail on any request that leaves 127.0.0.1.
    const outside = [];
    page.on('request', (r) => { if (!r.url().startsWith('http://127.0.0.1')) outside.push(r.url()); });

    await step('map shows services and inferred nodes', async () => {
      await page.goto(http + '/');
      for (const [name, type] of [['web-frontend', 'AWS::EC2::Instance'], ['orders-api', 'AWS::ECS::Container'],
        ['orders', 'AWS::DynamoDB::Table'], ['order-events', 'AWS::SQS::Queue'], ['receipts', 'AWS::S3::Bucket'],
        ['payments.example.com', 'remote'], ['client', 'client']]) {
        assert.strictEqual(await page.locator(`a.node[data-name="${name}"][data-type="${type}"]`).count(), 1, `${name} ${type}`);
      }
      assert.ok(await page.locator('g.edge[data-from="web-frontend"][data-to="orders-api"]').count() >= 1);
      await page.screenshot({ path: path.join(docs, 'map.png') });
    });

    await step('click a node, see its health and follow to its traces', async () => {
      await page.click('a.node[data-name="orders-api"][data-type="AWS::ECS::Container"]');
      await page.waitForSelector('#node-panel');
      assert.match(await page.textContent('#node-panel'), /Average response time/);
      await page.screenshot({ path: path.join(docs, 'map-node.png') });
      await page.click('#view-traces');
      await page.waitForSelector('#traces');
      assert.strictEqual(await page.inputValue('#filter'), 'service(id(name: "orders-api", type: "AWS::ECS::Container"))');
      assert.strictEqual(await page.locator('tr.trace-row').count(), 24);
    });

    await step('filter URL is shareable', async () => {
      const url = `${http}/traces?filter=${encodeURIComponent('service("payments.example.com") AND (fault OR throttle)')}`;
      await page.goto(url);
      const rows = await page.locator('tr.trace-row').count();
      assert.ok(rows >= 3 && rows < 24, `rows ${rows}`);
      await page.screenshot({ path: path.join(docs, 'traces.png') });
      await page.goto(`${http}/traces?filter=${encodeURIComponent('service("orders-api")')}`);
    });

    await step('open a trace and see the bottleneck row', async () => {
      await page.locator('a.trace-link').first().click();
      await page.waitForSelector('#bottleneck');
      const text = await page.textContent('#bottleneck');
      assert.match(text, /Bottleneck: DynamoDB in orders-api/);
      assert.match(text, /\d+% of the trace/);
      const row = page.locator('details.bott');
      assert.strictEqual(await row.count(), 1);
      await row.locator(':scope > summary').click();
      await page.waitForSelector('details.bott[open] .detail');
      assert.match(await row.locator(':scope > .detail').textContent(), /"table_name": "orders"/);
      await page.screenshot({ path: path.join(docs, 'timeline.png'), fullPage: true });
    });

    await step('export the trace as JSON and import it again', async () => {
      const href = await page.getAttribute('#export', 'href');
      const exported = await (await fetch(http + href)).json();
      assert.ok(exported.Traces[0].Segments.length === 2);
      await page.goto(http + '/import');
      await page.fill('#text', JSON.stringify(exported));
      await page.click('#go');
      await page.waitForSelector('#result a');
      assert.match(await page.textContent('#result'), /Imported 2 document/);
    });

    await step('no request left 127.0.0.1', async () => {
      assert.deepStrictEqual(outside, []);
    });
  } finally {
    if (browser) await browser.close();
    child.kill();
  }
}

main()
  .catch((e) => { if (failed === 0) { failed = 1; console.log(`not ok - setup\n  ${e && e.stack || e}`); } })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  });
