// Enqueue one message over the producer API of `outbox serve` (Node 18+, built-in fetch).
//
//   PARTOO_OUTBOX_URL=http://127.0.0.1:8787 OUTBOX_API_TOKEN=... \
//       node enqueue.mjs CHANNEL MESSAGE_ID BUSINESS CONVERSATION CONTENT
//
// Prints `id=<id> state=<state> duplicate=<true|false>` once the message is committed
// (HTTP 202). Re-sending the same key is safe (duplicate=true, nothing changes), so a
// timeout or a 503 (after Retry-After) is retried. Other errors: code and field, exit 1.
const API = process.env.PARTOO_OUTBOX_URL ?? "http://127.0.0.1:8787";
const TOKEN = process.env.OUTBOX_API_TOKEN;

async function enqueue(message, attempts = 5) {
  const headers = { "Content-Type": "application/json" };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(`${API}/v1/messages`, {
        method: "POST", headers, body: JSON.stringify(message),
        signal: AbortSignal.timeout(10000),
      });
      if (res.status === 503 && attempt < attempts) {
        const wait = Number(res.headers.get("Retry-After") ?? "1");
        await new Promise((r) => setTimeout(r, wait * 1000));
        continue;
      }
      return [res.status, await res.json()];
    } catch (e) {
      if (attempt >= attempts) throw e;
      await new Promise((r) => setTimeout(r, 1000)); // re-sending the same key is safe
    }
  }
}

const args = process.argv.slice(2);
if (args.length !== 5) {
  console.error("usage: node enqueue.mjs CHANNEL MESSAGE_ID BUSINESS CONVERSATION CONTENT");
  process.exit(2);
}
const [channel, messageId, business, conversation, content] = args;
const [status, doc] = await enqueue({
  channel_id: channel, external_message_id: messageId, business_id: business,
  external_conversation_id: conversation, content, sender_type: "User",
});
if (status === 202) {
  if (!Number.isInteger(doc.id) || typeof doc.duplicate !== "boolean") {
    console.error(`unexpected answer: ${JSON.stringify(doc)}`);
    process.exit(1);
  }
  console.log(`id=${doc.id} state=${doc.state} duplicate=${doc.duplicate}`);
} else {
  const err = doc.error ?? {};
  console.error(`HTTP ${status} ${err.code}: ${err.message} (field ${err.field})`);
  process.exit(1);
}
