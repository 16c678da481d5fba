import { benchCatchUp } from './catchup.ts';

const r = await benchCatchUp(console.log, Number(process.argv[2] ?? 256));
console.log(r);
