// What the Node.js client scripts share: the settings the client_libraries suite passes in
// the environment, checks that name the failed step, and a deadline for every wait.
'use strict';

const assert = require('node:assert');

/** How long any one wait (a message, a BLPOP, a job) may take. */
const WAIT_MS = 10000;

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined) {
    console.error(`environment variable ${name} is not set`);
    process.exit(1);
  }
  return value;
}

const settings = {
  host: '127.0.0.1',
  port: Number(env('SLOTGATE_PORT')),
  username: env('SLOTGATE_USER'),
  password: env('SLOTGATE_PASSWORD'),
  prefix: env('SLOTGATE_PREFIX', `node:${process.pid}:`),
};

/** Prints the step being run, so a failure's output shows how far it got. */
function step(library, name) {
  console.log(`${library}: ${name}`);
}

/** Deep equality of `got` and `want`, failing with the step's name. */
function check(what, got, want) {
  try {
    assert.deepStrictEqual(got, want);
  } catch {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

/** `promise`, or a rejection naming `what` after `ms`. */
function within(what, promise, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The fields of a CLIENT INFO reply whose names are in `wanted`, as an object. */
function clientInfo(reply, wanted) {
  const fields = Object.fromEntries(String(reply).trim().split(' ').map((kv) => kv.split('=', 2)));
  return Object.fromEntries(wanted.map((name) => [name, fields[name]]));
}

/** A promise resolved after `ms`. */
function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `scenario`, then exits 0, or 1 with the error when it throws. */
function run(label, scenario) {
  scenario().then(
    () => {
      console.log(`${label}: ok`);
      process.exit(0);
    },
    (err) => {
      console.error(err && err.stack ? err.stack : err);
      console.error(`${label}: FAILED`);
      process.exit(1);
    },
  );
}

module.exports = { WAIT_MS, settings, step, check, within, clientInfo, delay, run };
