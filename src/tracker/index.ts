export { WalApplier } from './apply.ts';
