// node-redis (the `redis` package) through slotgate. Usage: node node_redis.js 2|3
// createClient with RESP 2 or 3 (HELLO 3 AUTH), then a pipeline, MULTI/EXEC with WATCH,
// Pub/Sub on a duplicate connection, and a BLPOP answered by an RPUSH from another
// connection. Settings from the environment (common.js).
'use strict';

const { createClient } = require('redis');
const { version } = require('redis/package.json');
const { WAIT_MS, settings, step, check, within, clientInfo, delay, run } = require('./common');

const resp = Number(process.argv[2]);
const label = `node-redis ${version} RESP${resp}`;
const { host, port, username, password, prefix } = settings;

async function scenario() {
  if (resp !== 2 && resp !== 3) {
    throw new Error(`usage: node node_redis.js 2|3 (got ${process.argv[2]})`);
  }
  const tag = `{${prefix}node-redis-${resp}}`;
  const r = createClient({
    socket: { host, port, connectTimeout: WAIT_MS, reconnectStrategy: false },
    username,
    password,
    RESP: resp,
  });
  const errors = [];
  r.on('error', (err) => errors.push(err));
  const opened = [r];
  try {
    step(label, 'connect and AUTH');
    await within('connect', r.connect());
    check('PING', await r.ping(), 'PONG');
    check('ACL WHOAMI', await r.sendCommand(['ACL', 'WHOAMI']), username);
    const info = clientInfo(await r.sendCommand(['CLIENT', 'INFO']), ['user', 'resp']);
    check('CLIENT INFO', info, { user: username, resp: String(resp) });

    step(label, 'pipeline');
    const k = `${tag}:p`;
    const piped = await r.multi().set(k, '1').incr(k).get(k).del(k).execAsPipeline();
    check('pipeline replies', piped, ['OK', 2, '2', 1]);

    step(label, 'MULTI/EXEC with WATCH');
    const counter = `${tag}:counter`;
    await r.set(counter, '41');
    await r.watch(counter);
    const value = Number(await r.get(counter));
    const tx = r.multi().set(counter, String(value + 1)).set(`${tag}:other`, 'x');
    const exec = await tx.get(counter).exec();
    check('EXEC replies', exec, ['OK', 'OK', '42']);

    step(label, 'Pub/Sub');
    const channel = `${prefix}node-redis-${resp}:chan`;
    const sub = r.duplicate();
    sub.on('error', (err) => errors.push(err));
    opened.push(sub);
    await within('connect subscriber', sub.connect());
    let received;
    const message = new Promise((resolve) => {
      received = resolve;
    });
    await within('SUBSCRIBE', sub.subscribe(channel, (msg, ch) => received([ch, msg])));
    check('PUBLISH receivers', await r.publish(channel, 'hello'), 1);
    check('message', await within('message', message), [channel, 'hello']);

    step(label, 'BLPOP answered by a push from another connection');
    const queue = `${tag}:queue`;
    const pusher = r.duplicate();
    pusher.on('error', (err) => errors.push(err));
    opened.push(pusher);
    await within('connect pusher', pusher.connect());
    const popped = r.blPop(queue, WAIT_MS / 1000);
    await delay(300);
    check('RPUSH', await pusher.rPush(queue, 'job'), 1);
    check('BLPOP', await within('BLPOP', popped), { key: queue, element: 'job' });
    check('connection errors', errors.map(String), []);
  } finally {
    opened.forEach((c) => c.destroy());
  }
}

run(label, scenario);
