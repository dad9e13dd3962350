export { WorkQueue, backoffDelayMs } from './work-queue.js';
export type { WorkQueueOptions, WorkQueueStats } from './work-queue.js';
