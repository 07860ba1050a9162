import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError } from '../core/index.js';
import { defaultConfig, loadConfig } from './index.js';
import { tempDir } from '../../test/helpers/tmp.js';

function invalid(fn: () => unknown, ...patterns: RegExp[]) {
  assert.throws(fn, (err: HalflifeError) => {
    assert.equal(err.code, 'CONFIG_INVALID');
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

test('defaults apply when no file exists; relative dataDir resolves against the working folder', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { config, file } = loadConfig({ cwd: dir, env: {} });
    assert.equal(file, undefined);
    assert.equal(config.server.port, 7070);
    assert.equal(config.server.host, '127.0.0.1');
    assert.equal(config.log.fsync, 'interval');
    assert.equal(config.dataDir, join(dir, 'halflife-data'));
    assert.notEqual(defaultConfig(), defaultConfig(), 'a fresh object each time');
  } finally {
    await cleanup();
  }
});

test('precedence: defaults < file < HALFLIFE_* env < flags', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFile(join(dir, 'halflife.yaml'), 'server:\n  port: 8000\n  host: 0.0.0.0\nlog:\n  partitions: 4\n  fsync: always\n');
    const env = { HALFLIFE_SERVER_PORT: '9000', HALFLIFE_LOG_RETENTION_MAX_AGE_MS: '1000' };
    const { config, file } = loadConfig({ cwd: dir, env, flags: { 'log.partitions': 2 } });
    assert.equal(file, join(dir, 'halflife.yaml'));
    assert.equal(config.server.host, '0.0.0.0');
    assert.equal(config.server.port, 9000);
    assert.equal(config.log.fsync, 'always');
    assert.equal(config.log.partitions, 2);
    assert.equal(config.log.retention.maxAgeMs, 1000);
    assert.equal(config.log.fsyncIntervalMs, 100, 'untouched keys keep defaults');
  } finally {
    await cleanup();
  }
});

test('unknown and ill-typed keys stop start-up with the path and what was expected', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, 'halflife.yaml');
    await writeFile(path, 'log:\n  partitons: 4\n  fsync: sometimes\nserver:\n  port: "eighty"\n');
    invalid(
      () => loadConfig({ cwd: dir, env: {} }),
      /log\.partitons: unknown key \(did you mean partitions\?\)/,
      /log\.fsync: expected one of always, interval, never \(got "sometimes"\)/,
      /server\.port: must be integer \(got "eighty"\)/,
    );
    invalid(() => loadConfig({ cwd: dir, env: {}, file: path }), /partitons/);
    await writeFile(path, 'log: [unclosed\n');
    invalid(() => loadConfig({ cwd: dir, env: {} }), /not valid YAML/);
  } finally {
    await cleanup();
  }
});

test('bad environment overrides are refused by name', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    invalid(() => loadConfig({ cwd: dir, env: { HALFLIFE_SERVER_PROT: '1' } }), /HALFLIFE_SERVER_PROT: not a config setting \(did you mean HALFLIFE_SERVER_PORT\?\)/);
    invalid(() => loadConfig({ cwd: dir, env: { HALFLIFE_LOG_FSYNC: 'maybe' } }), /log\.fsync: expected one of/);
    assert.equal(loadConfig({ cwd: dir, env: { HALFLIFE_URL: 'http://x' } }).config.server.port, 7070);
    const pinned = loadConfig({ cwd: dir, env: { HALFLIFE_LOG_PINNED_KEYS: '{"BTC-USD":7}' } }).config;
    assert.deepEqual(pinned.log.pinnedKeys, { 'BTC-USD': 7 });
    invalid(() => loadConfig({ cwd: dir, env: { HALFLIFE_LOG_PINNED_KEYS: '{"BTC-USD":9}' } }), /partition 9 does not exist/);
  } finally {
    await cleanup();
  }
});

test('a named config file that is missing is an error', () => {
  assert.throws(() => loadConfig({ file: '/nonexistent/halflife.yaml', env: {} }), { code: 'CONFIG_NOT_FOUND' });
});

test('a config file that cannot be read says so, not that it is invalid YAML', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, 'halflife.yaml'));
    invalid(() => loadConfig({ cwd: dir, env: {} }), /cannot read config file .*halflife\.yaml: it is a folder \(EISDIR\)/);
    await writeFile(join(dir, 'bad.yaml'), 'server: [');
    invalid(() => loadConfig({ cwd: dir, env: {}, file: join(dir, 'bad.yaml') }), /not valid YAML/);
  } finally {
    await cleanup();
  }
});

test('HALFLIFE_NATS puts the log on NATS JetStream; a nats backend without servers, or a bad URL, is refused', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { config } = loadConfig({ cwd: dir, env: { HALFLIFE_NATS: 'nats://h1:4222,nats://h2:4222', HALFLIFE_NATS_REPLICAS: '1' } });
    assert.equal(config.log.backend, 'nats');
    assert.equal(config.nats.servers, 'nats://h1:4222,nats://h2:4222');
    assert.equal(config.nats.replicas, 1);
    assert.equal(loadConfig({ cwd: dir, env: {} }).config.log.backend, 'files');
    invalid(() => loadConfig({ cwd: dir, env: { HALFLIFE_LOG_BACKEND: 'nats' } }), /nats\.servers/);
    invalid(() => loadConfig({ cwd: dir, env: { HALFLIFE_NATS_SERVERS: 'h1:4222' } }), /nats\.servers/);
    invalid(() => loadConfig({ cwd: dir, env: { HALFLIFE_NATS_REPLICAS: '7' } }), /nats\.replicas/);
  } finally {
    await cleanup();
  }
});
