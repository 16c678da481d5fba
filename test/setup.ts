import { afterAll } from 'vitest';
import { removeScratchDirs } from './helpers/scratch.ts';

// Each test file's scratch directories go when it ends: vitest's workers do not always see a process exit.
afterAll(removeScratchDirs);
