// The piscina entry of the query workers: one SQL statement over the shared map and the catalog.
import type { QueryResult } from '../src/query/engine.ts';
import { answerQuery, type QueryTask } from '../src/query/task.ts';

export default function query(task: QueryTask): QueryResult {
  return answerQuery(task);
}
