// Second-client conformance check: the JavaScript Service Bus SDK (rhea underneath) against the endpoint in
// SERVICEBUS_CONNECTION_STRING, with the queues of Config.json beside this file. A different AMQP stack
// catches broker behaviour that only happens to suit the Python SDK.
//
// Usage: SERVICEBUS_CONNECTION_STRING=... node emulator_tests/js/conformance.mjs
// Prints one line per check and "N passed, M failed"; exits 1 if anything failed.

import { randomUUID } from "node:crypto";
import { ServiceBusClient } from "@azure/service-bus";

const connectionString = process.env.SERVICEBUS_CONNECTION_STRING;
if (!connectionString) {
  console.error("SERVICEBUS_CONNECTION_STRING is not set");
  process.exit(2);
}

const CHECK_TIMEOUT_MS = 60_000;
const run = randomUUID().slice(0, 8);
const checks = [];

function check(name, fn) {
  checks.push({ name, fn });
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

function expectEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

async function receiveN(receiver, n, maxWaitTimeInMs = 5000) {
  const got = [];
  for (let round = 0; round < 20 && got.length < n; round++) {
    const batch = await receiver.receiveMessages(n - got.length, { maxWaitTimeInMs });
    if (batch.length === 0) break;
    got.push(...batch);
  }
  return got;
}

async function withClient(fn) {
  const client = new ServiceBusClient(connectionString);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

check("send, receive and complete one message", () =>
  withClient(async (client) => {
    const messageId = `basic-${run}`;
    const sender = client.createSender("js-basic");
    await sender.sendMessages({
      body: "hello from rhea",
      messageId,
      subject: "greeting",
      correlationId: "corr-js",
      applicationProperties: { origin: "js", count: 3 },
    });
    await sender.close();
    const receiver = client.createReceiver("js-basic", { receiveMode: "peekLock" });
    const [msg] = await receiveN(receiver, 1);
    expect(msg, "no message arrived within 5 s");
    expectEqual(msg.messageId, messageId, "messageId");
    expectEqual(msg.body, "hello from rhea", "body");
    expectEqual(msg.subject, "greeting", "subject");
    expectEqual(msg.correlationId, "corr-js", "correlationId");
    expectEqual(msg.applicationProperties, { origin: "js", count: 3 }, "applicationProperties");
    expectEqual(msg.deliveryCount, 0, "deliveryCount on first delivery");
    expect(typeof msg.sequenceNumber?.toNumber === "function" && msg.sequenceNumber.toNumber() > 0,
      `sequenceNumber should be a positive Long, got ${msg.sequenceNumber}`);
    expect(msg.enqueuedTimeUtc instanceof Date, `enqueuedTimeUtc should be a Date, got ${msg.enqueuedTimeUtc}`);
    expect(msg.lockedUntilUtc instanceof Date, `lockedUntilUtc should be a Date, got ${msg.lockedUntilUtc}`);
    expect(typeof msg.lockToken === "string" && msg.lockToken.length === 36, `lockToken, got ${msg.lockToken}`);
    await receiver.completeMessage(msg);
    const after = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1000 });
    expectEqual(after.length, 0, "messages left after complete");
    await receiver.close();
  }),
);

check("batch send keeps order", () =>
  withClient(async (client) => {
    const sender = client.createSender("js-batch");
    const batch = await sender.createMessageBatch();
    const ids = [0, 1, 2, 3].map((i) => `batch-${run}-${i}`);
    for (const id of ids) expect(batch.tryAddMessage({ body: id, messageId: id }), `batch refused ${id}`);
    await sender.sendMessages(batch);
    await sender.close();
    const receiver = client.createReceiver("js-batch");
    const got = await receiveN(receiver, 4);
    expectEqual(got.map((m) => m.messageId), ids, "message ids in order");
    for (const m of got) await receiver.completeMessage(m);
    await receiver.close();
  }),
);

check("abandon redelivers with deliveryCount + 1", () =>
  withClient(async (client) => {
    const sender = client.createSender("js-abandon");
    await sender.sendMessages({ body: "again", messageId: `abandon-${run}` });
    await sender.close();
    const receiver = client.createReceiver("js-abandon");
    const [first] = await receiveN(receiver, 1);
    expect(first, "no message arrived");
    await receiver.abandonMessage(first);
    const [second] = await receiveN(receiver, 1);
    expect(second, "abandoned message did not come back");
    expectEqual(second.messageId, `abandon-${run}`, "messageId");
    expectEqual(second.deliveryCount, 1, "deliveryCount after abandon");
    await receiver.completeMessage(second);
    await receiver.close();
  }),
);

check("abandon with propertiesToModify updates application properties", () =>
  withClient(async (client) => {
    const sender = client.createSender("js-abandon");
    await sender.sendMessages({
      body: "modify me",
      messageId: `modify-${run}`,
      applicationProperties: { attempt: "first", untouched: "yes" },
    });
    await sender.close();
    const receiver = client.createReceiver("js-abandon");
    const [first] = await receiveN(receiver, 1);
    expect(first, "no message arrived");
    await receiver.abandonMessage(first, { attempt: "second", added: 7 });
    const [second] = await receiveN(receiver, 1);
    expect(second, "abandoned message did not come back");
    expectEqual(second.messageId, `modify-${run}`, "messageId");
    expectEqual(second.deliveryCount, 1, "deliveryCount after abandon");
    expectEqual(
      second.applicationProperties,
      { attempt: "second", untouched: "yes", added: 7 },
      "applicationProperties after abandon with propertiesToModify",
    );
    await receiver.completeMessage(second);
    await receiver.close();
  }),
);

check("dead-letter with reason reaches the dead-letter queue", () =>
  withClient(async (client) => {
    const sender = client.createSender("js-dead-letter");
    await sender.sendMessages({ body: "poison", messageId: `dlq-${run}` });
    await sender.close();
    const receiver = client.createReceiver("js-dead-letter");
    const [msg] = await receiveN(receiver, 1);
    expect(msg, "no message arrived");
    await receiver.deadLetterMessage(msg, { deadLetterReason: "BadInput", deadLetterErrorDescription: "from js" });
    await receiver.close();
    const dlq = client.createReceiver("js-dead-letter", { subQueueType: "deadLetter" });
    const [dead] = await receiveN(dlq, 1);
    expect(dead, "nothing in the dead-letter queue");
    expectEqual(dead.messageId, `dlq-${run}`, "messageId");
    expectEqual(dead.deadLetterReason, "BadInput", "deadLetterReason");
    expectEqual(dead.deadLetterErrorDescription, "from js", "deadLetterErrorDescription");
    await dlq.completeMessage(dead);
    await dlq.close();
  }),
);

check("peek does not lock or consume", () =>
  withClient(async (client) => {
    const sender = client.createSender("js-peek");
    const ids = [0, 1, 2].map((i) => `peek-${run}-${i}`);
    await sender.sendMessages(ids.map((id) => ({ body: id, messageId: id })));
    await sender.close();
    const receiver = client.createReceiver("js-peek");
    const peeked = await receiver.peekMessages(10);
    expectEqual(peeked.map((m) => m.messageId), ids, "peeked ids");
    const got = await receiveN(receiver, 3);
    expectEqual(got.map((m) => m.messageId), ids, "received ids after peek");
    for (const m of got) await receiver.completeMessage(m);
    await receiver.close();
  }),
);

check("session receive in order with session state", () =>
  withClient(async (client) => {
    const sessionId = `session-${run}`;
    const other = `other-${run}`;
    const sender = client.createSender("js-sessions");
    await sender.sendMessages([
      { body: "0", sessionId },
      { body: "x", sessionId: other },
      { body: "1", sessionId },
      { body: "2", sessionId },
    ]);
    await sender.close();
    const receiver = await client.acceptSession("js-sessions", sessionId);
    expectEqual(receiver.sessionId, sessionId, "accepted session id");
    expect(receiver.sessionLockedUntilUtc instanceof Date, "sessionLockedUntilUtc should be a Date");
    const got = await receiveN(receiver, 3);
    expectEqual(got.map((m) => m.body), ["0", "1", "2"], "bodies of the session, in order");
    expectEqual([...new Set(got.map((m) => m.sessionId))], [sessionId], "session ids on messages");
    for (const m of got) await receiver.completeMessage(m);
    const state = Buffer.from(`state-${run}`);
    await receiver.setSessionState(state);
    const read = await receiver.getSessionState();
    expect(Buffer.isBuffer(read) && read.equals(state), `session state round-trip, got ${read}`);
    const renewed = await receiver.renewSessionLock();
    expect(renewed instanceof Date, "renewSessionLock should return a Date");
    await receiver.close();

    const again = await client.acceptSession("js-sessions", sessionId);
    const kept = await again.getSessionState();
    expect(Buffer.isBuffer(kept) && kept.equals(state), "session state survives the receiver");
    await again.setSessionState(null);
    await again.close();

    const rest = await client.acceptSession("js-sessions", other);
    const [x] = await receiveN(rest, 1);
    expect(x && x.body === "x", "the other session keeps its own message");
    await rest.completeMessage(x);
    await rest.close();
  }),
);

check("next available session", () =>
  withClient(async (client) => {
    const sessionId = `next-${run}`;
    const sender = client.createSender("js-next-session");
    await sender.sendMessages({ body: "n", sessionId });
    await sender.close();
    const receiver = await client.acceptNextSession("js-next-session", { maxAutoLockRenewalDurationInMs: 0 });
    expectEqual(receiver.sessionId, sessionId, "session chosen by the broker");
    const [msg] = await receiveN(receiver, 1);
    expect(msg && msg.body === "n", "message of the next available session");
    await receiver.completeMessage(msg);
    await receiver.close();
  }),
);

function withTimeout(promise, ms, name) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name}: no result within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let passed = 0;
let failed = 0;
for (const { name, fn } of checks) {
  try {
    await withTimeout(fn(), CHECK_TIMEOUT_MS, name);
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    const detail = err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? err);
    console.log(`not ok - ${name}\n    ${detail.replaceAll("\n", "\n    ")}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
