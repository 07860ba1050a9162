/**
 * Every example in README.md and docs/*.md that shows a command together with its result runs here against a
 * real server, so the docs cannot drift from what halflife does.
 *
 * The convention: a fenced block whose info string is `console`. In it,
 *   - a line starting with `$ ` is a command (a line ending in `\` continues on the next one);
 *   - the lines after it, up to the next `$ `, are what it prints (stdout and stderr, in order, as in a terminal);
 *   - in an expected line `...` matches any text, and a line that is only `...` matches any number of lines;
 *   - a last line `[exit N]` says the command exits with N (otherwise it must exit 0);
 *   - `# comment` after a command is ignored.
 * Commands: `halflife …` (run in-process through the CLI's `main`), `curl [-s] [-X M] [-H h] [-d body] URL`, `cd DIR`,
 * and `A && B`. `halflife serve` (with or without `&`) starts the example's server in the current folder (its
 * config, on a free port) and prints nothing; a file without one gets a server on an empty data folder at its first
 * command that needs one. http://127.0.0.1:7070 in commands means that server. Every view has caught up with the log before each
 * command, so results do not depend on timing. The blocks of one file run in order, in one fresh temporary
 * folder, sharing one server.
 *
 * To add an example: write a `console` block as above in README.md or docs/*.md; this test picks it up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/cli/output.js';
import { loadConfig } from '../src/config/index.js';
import { HalflifeServer } from '../src/server/index.js';
import { pino } from 'pino';
import { tempDir } from './helpers/tmp.js';

const ROOT = new URL('../', import.meta.url);
const DOCS = ['README.md', ...readdirSync(new URL('docs/', ROOT)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

interface Step {
  command: string;
  expected: string[];
  exit: number;
  line: number;
}

/** The `console` blocks of a markdown text, as commands with their expected output. */
export function examples(markdown: string): Step[][] {
  const blocks: Step[][] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^```console\s*$/.test(lines[i])) continue;
    const steps: Step[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) {
      const l = lines[i];
      if (l.startsWith('$ ')) {
        let command = l.slice(2);
        const line = i + 1;
        while (command.endsWith('\\') && i + 1 < lines.length) command = command.slice(0, -1) + '\n' + lines[++i];
        steps.push({ command, expected: [], exit: 0, line });
      } else if (steps.length > 0) {
        const m = /^\[exit (\d+)\]$/.exec(l.trim());
        if (m) steps[steps.length - 1].exit = Number(m[1]);
        else steps[steps.length - 1].expected.push(l);
      }
    }
    blocks.push(steps);
  }
  return blocks;
}

/** Shell words: quotes, backslashes, `&&`, a trailing `&`, `# comments`. Enough for documentation. */
export function shellWords(text: string): string[][] {
  const commands: string[][] = [[]];
  let word: string | undefined;
  const end = () => {
    if (word !== undefined) commands[commands.length - 1].push(word);
    word = undefined;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'") {
      const j = text.indexOf("'", i + 1);
      if (j < 0) throw new Error(`unclosed ' in ${text}`);
      word = (word ?? '') + text.slice(i + 1, j);
      i = j;
    } else if (c === '"') {
      let j = i + 1;
      let s = '';
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === '\\' && '"\\$`'.includes(text[j + 1])) s += text[++j];
        else s += text[j];
      }
      if (j >= text.length) throw new Error(`unclosed " in ${text}`);
      word = (word ?? '') + s;
      i = j;
    } else if (c === '\\' && text[i + 1] === '\n') i++;
    else if (c === '\\') word = (word ?? '') + text[++i];
    else if (c === '&' && text[i + 1] === '&') {
      end();
      commands.push([]);
      i++;
    } else if (c === '&') end(); // background: the runner decides what that means
    else if (c === '#' && word === undefined) break;
    else if (/\s/.test(c)) end();
    else word = (word ?? '') + c;
  }
  end();
  return commands.filter((c) => c.length > 0);
}

/** Does the output match the expected lines (`...` wildcards)? */
export function matches(actual: string[], expected: string[]): boolean {
  const re = expected.map((e) => (e.trim() === '...' ? null : new RegExp(`^${e.trimEnd().split('...').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)));
  const memo = new Map<string, boolean>();
  const go = (a: number, e: number): boolean => {
    const key = `${a}:${e}`;
    if (memo.has(key)) return memo.get(key)!;
    let r: boolean;
    if (e === re.length) r = a === actual.length;
    else if (re[e] === null) r = go(a, e + 1) || (a < actual.length && go(a + 1, e));
    else r = a < actual.length && re[e]!.test(actual[a].trimEnd()) && go(a + 1, e + 1);
    memo.set(key, r);
    return r;
  };
  return go(0, 0);
}

class Session {
  cwd: string;
  server: HalflifeServer | undefined;
  url = '';
  constructor(cwd: string) {
    this.cwd = cwd;
  }

  async start(cwd: string, dataDir?: string) {
    if (this.server !== undefined) throw new Error('a second halflife serve in one file');
    const { config } = loadConfig({ cwd, env: {}, flags: { 'server.port': 0, 'server.host': '127.0.0.1', logLevel: 'silent', ...(dataDir ? { dataDir } : {}) } });
    config.ingest.workers = 1;
    this.server = new HalflifeServer({ config, logger: pino({ level: 'silent' }) });
    await this.server.start();
    this.url = await this.server.listen();
  }

  /** Waits until every view has applied everything the log holds now. */
  async settle() {
    const s = this.server;
    if (s === undefined) return;
    const end = s.log.stats().partitions.map((p) => p.nextOffset);
    for (const view of await s.engine.names()) {
      for (let i = 0; ; i++) {
        const info = await s.engine.info(view);
        if (info.offsets.every((o, p) => o >= end[p])) break;
        if (i > 3000) throw new Error(`view ${view} did not catch up`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  async run(words: string[], out: string[]): Promise<number> {
    const [cmd, ...args] = words;
    const { resolve } = await import('node:path');
    if (cmd === 'cd') {
      this.cwd = resolve(this.cwd, args[0]);
      return 0;
    }
    if (cmd === 'halflife' && args[0] === 'serve') {
      await this.start(this.cwd);
      return 0;
    }
    const needsServer = !(cmd === 'halflife' && (args[0] === 'init' || args.includes('--help')));
    if (needsServer && this.server === undefined) await this.start(this.cwd, resolve(this.cwd, 'halflife-data'));
    await this.settle();
    const local = (s: string) => s.replaceAll('http://127.0.0.1:7070', this.url);
    if (cmd === 'halflife') {
      let text = '';
      const io: Io = { isTTY: false, out: (t) => void (text += t), err: (t) => void (text += t) };
      const previous = { cwd: process.cwd(), url: process.env.HALFLIFE_URL };
      process.chdir(this.cwd);
      process.env.HALFLIFE_URL = this.url;
      try {
        const code = await main(args.map(local), io);
        out.push(...text.replace(/\n$/, '').split('\n').filter((l, i, all) => !(all.length === 1 && l === '')));
        return code;
      } finally {
        process.chdir(previous.cwd);
        if (previous.url === undefined) delete process.env.HALFLIFE_URL;
        else process.env.HALFLIFE_URL = previous.url;
      }
    }
    if (cmd === 'curl') {
      let method: string | undefined;
      const headers: Record<string, string> = {};
      let body: string | undefined;
      let url: string | undefined;
      for (let i = 0; i < args.length; i++) {
        const a = args[i];
        if (a === '-s' || a === '-S' || a === '-sS') continue;
        else if (a === '-X') method = args[++i];
        else if (a === '-H') {
          const [k, ...v] = args[++i].split(':');
          headers[k.trim().toLowerCase()] = v.join(':').trim();
        } else if (a === '-d' || a === '--data' || a === '--data-binary') body = args[++i];
        else if (a.startsWith('-')) throw new Error(`curl option ${a} is not supported by the docs runner`);
        else url = local(a);
      }
      if (url === undefined) throw new Error('curl without a URL');
      if (body !== undefined) headers['content-type'] ??= 'application/x-www-form-urlencoded';
      const res = await fetch(url, { method: method ?? (body === undefined ? 'GET' : 'POST'), headers, body });
      const text = await res.text();
      out.push(...text.replace(/\n$/, '').split('\n').filter((l, i, all) => !(all.length === 1 && l === '')));
      return 0;
    }
    throw new Error(`the docs runner does not know the command ${cmd}`);
  }

  async close() {
    await this.server?.close();
  }
}

for (const file of DOCS) {
  const blocks = examples(readFileSync(new URL(file, ROOT), 'utf8'));
  if (blocks.length === 0) continue;
  test(`the console examples of ${file} do what they show`, async () => {
    const { dir, cleanup } = await tempDir('halflife-docs-');
    const session = new Session(dir);
    try {
      for (const steps of blocks) {
        for (const step of steps) {
          const out: string[] = [];
          let code = 0;
          for (const words of shellWords(step.command)) {
            code = await session.run(words, out);
            if (code !== 0) break;
          }
          const where = `${file}:${step.line}: $ ${step.command}`;
          assert.ok(matches(out, step.expected), `${where}\n--- expected\n${step.expected.join('\n')}\n--- actual\n${out.join('\n')}\n---`);
          assert.equal(code, step.exit, `${where}: exit code\n${out.join('\n')}`);
        }
      }
    } finally {
      await session.close();
      await cleanup();
    }
  });
}

test('the runner itself: words, wildcards, blocks', () => {
  assert.deepEqual(shellWords(`halflife query "SELECT a, 'x' FROM v" --url u # note`), [['halflife', 'query', "SELECT a, 'x' FROM v", '--url', 'u']]);
  assert.deepEqual(shellWords(`halflife init demo && cd demo`), [['halflife', 'init', 'demo'], ['cd', 'demo']]);
  assert.deepEqual(shellWords(`halflife serve &`), [['halflife', 'serve']]);
  assert.deepEqual(shellWords(`curl -d '{"a": 1}' \\\n  http://x`), [['curl', '-d', '{"a": 1}', 'http://x']]);
  assert.ok(matches(['sent 3 events (0.1 s)', 'x'], ['sent 3 events (...)', '...']));
  assert.ok(!matches(['sent 3 events'], ['sent 4 events']));
  assert.ok(!matches(['a', 'b'], ['a']));
  assert.ok(matches([], ['...']));
  assert.ok(!matches(['a.b'], ['aXb']), 'a dot is literal');
  const blocks = examples('text\n```console\n$ halflife a \\\n  b\nout 1\n[exit 1]\n$ curl x\n```\n```sh\n$ not this\n```\n');
  assert.deepEqual(blocks, [[{ command: 'halflife a \n  b', expected: ['out 1'], exit: 1, line: 3 }, { command: 'curl x', expected: [], exit: 0, line: 7 }]]);
});
