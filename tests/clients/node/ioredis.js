// ioredis through slotgate. Usage: node ioredis.js plain|cluster [2|3]
//   plain    new Redis(...): HELLO with AUTH as the configured user, its INFO ready check
//   cluster  new Redis.Cluster(...): CLUSTER SLOTS finds slotgate's one-node cluster
//   2|3      the `protocol` option (ioredis 6 speaks RESP3 unless told otherwise)
// Both: a pipeline, MULTI/EXEC (with WATCH for plain), Pub/Sub on two connections, and a
// BLPOP answered by an RPUSH from another connection. Settings from the environment (common.js).
'use strict';

const Redis = require('ioredis');
const { version } = require('ioredis/package.json');
const { WAIT_MS, settings, step, check, within, clientInfo, delay, run } = require('./common');

const mode = process.argv[2];
const protocol = Number(process.argv[3] ?? 3);
const label = `ioredis ${version} ${mode} RESP${protocol}`;
const { host, port, username, password, prefix } = settings;
const redisOptions = {
  username,
  password,
  protocol,
  maxRetriesPerRequest: 1,
  connectTimeout: WAIT_MS,
};

function connect() {
  if (mode === 'cluster') {
    return new Redis.Cluster([{ host, port }], { redisOptions, enableOfflineQueue: true });
  }
  return new Redis({ host, port, ...redisOptions });
}

async function scenario() {
  if ((mode !== 'plain' && mode !== 'cluster') || (protocol !== 2 && protocol !== 3)) {
    throw new Error(`usage: node ioredis.js plain|cluster [2|3] (got ${process.argv.slice(2)})`);
  }
  // Keys share a hash tag: ioredis's Cluster refuses a pipeline across slots itself.
  const tag = `{${prefix}ioredis-${mode}-${protocol}}`;
  const r = connect();
  const opened = [r];
  try {
    step(label, 'connect and AUTH');
    check('PING', await within('PING', r.ping()), 'PONG');
    check('ACL WHOAMI', await r.call('ACL', 'WHOAMI'), username);
    const info = clientInfo(await r.call('CLIENT', 'INFO'), ['user', 'resp']);
    check('CLIENT INFO', info, { user: username, resp: String(protocol) });
    if (mode === 'cluster') {
      const nodes = r.nodes('master').map((n) => `${n.options.host}:${n.options.port}`);
      check('cluster nodes', nodes, [`${host}:${port}`]);
    }

    step(label, 'pipeline');
    const k = `${tag}:p`;
    const piped = await r.pipeline().set(k, '1').incr(k).get(k).del(k).exec();
    check('pipeline replies', piped, [[null, 'OK'], [null, 2], [null, '2'], [null, 1]]);

    step(label, mode === 'cluster' ? 'MULTI/EXEC' : 'MULTI/EXEC with WATCH');
    const counter = `${tag}:counter`;
    await r.set(counter, '41');
    let exec;
    if (mode === 'cluster') {
      exec = await r.multi().incr(counter).set(`${tag}:other`, 'x').get(counter).exec();
      check('EXEC replies', exec, [[null, 42], [null, 'OK'], [null, '42']]);
    } else {
      await r.watch(counter);
      const value = Number(await r.get(counter));
      const tx = r.multi().set(counter, String(value + 1)).set(`${tag}:other`, 'x');
      exec = await tx.get(counter).exec();
      check('EXEC replies', exec, [[null, 'OK'], [null, 'OK'], [null, '42']]);
    }

    step(label, 'Pub/Sub');
    const channel = `${prefix}ioredis-${mode}-${protocol}:chan`;
    const sub = connect();
    opened.push(sub);
    const message = new Promise((resolve) => sub.on('message', (ch, msg) => resolve([ch, msg])));
    check('SUBSCRIBE count', await within('SUBSCRIBE', sub.subscribe(channel)), 1);
    check('PUBLISH receivers', await r.publish(channel, 'hello'), 1);
    check('message', await within('message', message), [channel, 'hello']);

    step(label, 'BLPOP answered by a push from another connection');
    const queue = `${tag}:queue`;
    const pusher = connect();
    opened.push(pusher);
    await within('pusher PING', pusher.ping());
    const popped = r.blpop(queue, WAIT_MS / 1000);
    await delay(300);
    check('RPUSH', await pusher.rpush(queue, 'job'), 1);
    check('BLPOP', await within('BLPOP', popped), [queue, 'job']);
  } finally {
    opened.forEach((c) => c.disconnect());
  }
}

run(label, scenario);
