import { parentPort, workerData } from 'node:worker_threads';
import { type MapBuffers, PtrackMap } from '../../src/map/index.ts';

/** Marks the blocks it is given in the shared map, as a decoder worker will. */
const { buffers, marks } = workerData as { buffers: MapBuffers; marks: Float64Array };
const map = new PtrackMap(buffers);
for (let i = 0; i < marks.length; i += 3) map.markBlock(1663, 5, marks[i], 0, marks[i + 1], marks[i + 2]);
parentPort!.postMessage('done');
