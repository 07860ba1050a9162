import type { EngineHost } from '../engine/index.js';
import type { QueryResult } from './query.js';

/** The module the engine workers load to answer `queryOn` (give it to `EngineHost` as an extension). */
export const QUERY_EXTENSION = new URL(`./engine-extension${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

/**
 * Runs `SELECT … FROM <view> …` on the engine's workers: with several, the first gathers the view's partial groups
 * from the others and merges them (sketches merge) before answering.
 */
export async function queryOn(engine: EngineHost, sql: string): Promise<QueryResult> {
  if (!engine.distributed) return (await engine.extension('query', sql)) as QueryResult;
  const view = (await engine.extension('queryView', sql)) as string;
  return (await engine.withForeign(view, {}, (foreign) => engine.extension('query', sql, foreign))) as QueryResult;
}
