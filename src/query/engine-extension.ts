/**
 * Ad-hoc SELECT in the engine's thread, where the views' state is: loaded by each engine worker as an extension
 * (`WorkerInit.extensions`), so the engine room does not import this one.
 */
import type { EngineExtension, PartialGroup } from '../engine/index.js';
import { queryView, runQuery } from './query.js';

export const engineMethods: EngineExtension = (engine, init) => ({
  query: (sql: string, foreign: PartialGroup[][] = []) => runQuery(engine, sql, foreign, { timeoutMs: init.queryTimeoutMs }),
  queryView: (sql: string) => queryView(engine, sql),
});
