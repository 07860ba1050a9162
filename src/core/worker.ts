import { Worker } from 'node:worker_threads';

/**
 * Starts a worker thread running the module at `moduleUrl` (a sibling of the caller, given as `./name` with the
 * caller's `import.meta.url`). Run from source (tests, tsx), the worker registers the TypeScript loader in its own
 * thread first; built, it runs the compiled `.js` file.
 */
export function startModuleWorker(name: string, callerUrl: string, workerData: unknown): Worker {
  const ext = callerUrl.endsWith('.ts') ? '.ts' : '.js';
  const url = new URL(`./${name}${ext}`, callerUrl);
  if (ext === '.js') return new Worker(url, { workerData });
  return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); })`, {
    eval: true,
    workerData,
  });
}
