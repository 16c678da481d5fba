export { QueryEngine, type QueryResult, type QuerySources } from './engine.ts';
export { type RelationFile, relationFilesInCatalog, relationFilesInPgdata } from './files.ts';
export {
  type ChangeStat,
  changeStat,
  LimitIndex,
  type PagemapRow,
  pagemapset,
  QueryError,
} from './pagemapset.ts';
export { parseRelationFileName, RELSEG_SIZE, relationFilePath, tablespaceVersionDir } from './paths.ts';
export {
  type AnswerOutcome,
  type AnswerSource,
  type FreshAnswer,
  type QueryRequest,
  QueryService,
  type ServerPosition,
  StaleAnswerError,
} from './service.ts';
export { answerQuery, type QueryTask } from './task.ts';
export { PTRACK_VERSION } from './version.ts';
