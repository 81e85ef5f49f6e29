// BullMQ through slotgate: a Queue adds a job, a Worker processes it, and the script waits for
// its completion through QueueEvents (XREAD BLOCK on the events stream). BullMQ's Lua scripts
// name several keys of a queue: the prefix carries a hash tag so they share a slot, as BullMQ
// asks for Redis Cluster. Settings from the environment (common.js).
'use strict';

const { Queue, Worker, QueueEvents } = require('bullmq');
const { version } = require('bullmq/package.json');
const { settings, step, check, within, run } = require('./common');

const label = `BullMQ ${version}`;
const { host, port, username, password, prefix } = settings;

async function scenario() {
  // A Worker's connection must not give up on a command (BullMQ's own requirement).
  const connection = { host, port, username, password, maxRetriesPerRequest: null };
  const options = { connection, prefix: `{${prefix}bullmq}` };
  const name = 'jobs';
  const queue = new Queue(name, options);
  const events = new QueueEvents(name, options);
  let worker;
  try {
    step(label, 'queue and events ready');
    await within('Queue ready', queue.waitUntilReady());
    await within('QueueEvents ready', events.waitUntilReady());

    step(label, 'worker processes an added job');
    worker = new Worker(name, async (job) => job.data.x * 2, options);
    const failed = new Promise((_, reject) =>
      worker.on('failed', (job, err) => reject(new Error(`job ${job && job.id} failed: ${err}`))),
    );
    worker.on('error', (err) => console.error(`worker error: ${err}`));
    await within('Worker ready', worker.waitUntilReady());
    const job = await queue.add('double', { x: 21 });
    const finished = Promise.race([job.waitUntilFinished(events), failed]);
    const result = await within('job completion', finished);
    check('job result', result, 42);
    check('job state', await queue.getJobState(job.id), 'completed');
    check('job counts', await queue.getJobCounts('completed', 'failed', 'waiting', 'active'), {
      completed: 1,
      failed: 0,
      waiting: 0,
      active: 0,
    });
  } finally {
    await Promise.allSettled([worker && worker.close(), events.close()]);
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

run(label, scenario);
