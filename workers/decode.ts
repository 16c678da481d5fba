// The piscina entry of the decoder workers: decode one chunk of the WAL window and mark the shared map.
import { type ChunkResult, type ChunkTask, decodeChunk } from '../src/tracker/chunk.ts';

export default function decode(task: ChunkTask): ChunkResult {
  return decodeChunk(task);
}
