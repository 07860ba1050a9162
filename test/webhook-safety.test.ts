import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebhookSender } from '../src/sinks/index.js';
import { startServer } from './helpers/server.js';

/** A local HTTP server answering every request with `answer`; counts what it received. */
async function listen(answer: (url: string) => { status: number; headers?: Record<string, string> }): Promise<{ server: Server; url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    req.resume();
    const a = answer(req.url ?? '');
    res.writeHead(a.status, a.headers).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

/** Webhooks must not be an SSRF tool nor leak their secrets (issue #11 item 12). */
test('webhook deliveries do not follow redirects', async () => {
  const target = await listen(() => ({ status: 200 }));
  const redirector = await listen(() => ({ status: 302, headers: { location: `${target.url}/internal` } }));
  try {
    const result = await new WebhookSender().send(`${redirector.url}/hook`, { x: 1 }, { attempts: 3, backoffMs: 1 });
    assert.equal(result.delivered, false);
    assert.equal(result.attempts, 1, 'a redirect is final, not retried');
    assert.match(result.error!, /HTTP 302: redirects are not followed/);
    assert.deepEqual(target.hits, []);
  } finally {
    redirector.server.close();
    target.server.close();
  }
});

test('an allow-list of webhook hosts is matched against the canonical host (2130706433 is 127.0.0.1)', async () => {
  const sender = new WebhookSender(undefined, { allowedHosts: ['hooks.example.com', '*.corp.example'] });
  assert.equal(sender.refusal('https://hooks.example.com/x?token=1'), undefined);
  assert.equal(sender.refusal('https://HOOKS.example.com/x'), undefined);
  assert.equal(sender.refusal('https://alerts.corp.example/x'), undefined);
  assert.match(sender.refusal('https://corp.example/x')!, /host corp.example is not in alerts.allowedWebhookHosts/);
  assert.match(sender.refusal('https://evilcorp.example/x')!, /not in alerts.allowedWebhookHosts/);
  assert.match(sender.refusal('http://2130706433:7391/')!, /host 127.0.0.1 is not/);
  assert.match(sender.refusal('http://0x7f.1/')!, /host 127.0.0.1 is not/);
  assert.match(sender.refusal('http://hooks.example.com@127.0.0.1/')!, /host 127.0.0.1 is not/);
  const refused = await sender.send('http://127.0.0.1:9/', {});
  assert.deepEqual([refused.delivered, refused.attempts], [false, 0]);
  // Without a list, any http(s) host; never another scheme.
  assert.equal(new WebhookSender().refusal('http://127.0.0.1:9/'), undefined);
  assert.match(new WebhookSender().refusal('file:///etc/passwd')!, /not an http\(s\) URL/);
});

test('rules show webhook URLs redacted; the allow-list and the timeout bound are enforced when a rule is saved', async () => {
  const t = await startServer({ alerts: { allowedWebhookHosts: ['127.0.0.1', 'hooks.example.com'] } });
  try {
    const call = async (method: 'GET' | 'PUT', url: string, payload?: unknown) => {
      const res = await t.server.app.inject({ method, url, payload: payload === undefined ? undefined : JSON.stringify(payload), headers: payload === undefined ? {} : { 'content-type': 'application/json' } });
      return { status: res.statusCode, text: res.body, body: JSON.parse(res.body) as any };
    };
    const secretUrl = 'http://ops:hunter2@127.0.0.1:9/hook?token=s3cr3t#frag';
    const saved = await call('PUT', '/v1/alerts/lag', { metric: 'halflife_log_queued_bytes', threshold: 1e12, webhook: { url: secretUrl } });
    assert.equal(saved.status, 200, saved.text);
    for (const answer of [saved.text, (await call('GET', '/v1/alerts')).text, (await call('GET', '/v1/alerts/lag')).text]) {
      assert.ok(!/hunter2|s3cr3t|frag|ops:/.test(answer), answer);
      assert.match(answer, /http:\/\/\*\*\*@127\.0\.0\.1:9\/hook\?\*\*\*#\*\*\*/);
    }
    const elsewhere = await call('PUT', '/v1/alerts/x', { metric: 'halflife_log_queued_bytes', threshold: 1, webhook: { url: 'http://2130706433:7391/' } });
    assert.equal(elsewhere.status, 200, 'numeric 127.0.0.1 is the allowed 127.0.0.1');
    const outside = await call('PUT', '/v1/alerts/y', { metric: 'halflife_log_queued_bytes', threshold: 1, webhook: { url: 'http://10.0.0.1/' } });
    assert.equal(outside.status, 400);
    assert.equal(outside.body.error.code, 'ALERT_INVALID');
    assert.match(outside.body.error.message, /host 10.0.0.1 is not in alerts.allowedWebhookHosts/);
    const slow = await call('PUT', '/v1/alerts/z', { metric: 'halflife_log_queued_bytes', threshold: 1, webhook: { url: 'http://127.0.0.1:9/', timeoutMs: 1e300 } });
    assert.equal(slow.status, 400);
    assert.match(slow.body.error.message, /timeoutMs must be a number of milliseconds from 1 to 60000/);
  } finally {
    await t.cleanup();
  }
});
