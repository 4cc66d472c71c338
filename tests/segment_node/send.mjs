// Sends a web shop's calls through @segment/analytics-node, unchanged but for its host:
//   node send.mjs <host> <write key> <user id> <anonymous id> <message id prefix>
// Exits 1 when the library reports an error, so the test sees what Touchline refused.
import { Analytics } from "@segment/analytics-node";

const [host, writeKey, userId, anonymousId, prefix] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host, flushAt: 4, maxRetries: 0 });
let failed = false;
analytics.on("error", (error) => {
  failed = true;
  console.error("segment error:", error?.reason ?? error);
});
analytics.page({ anonymousId, name: "Home", properties: { path: "/" }, messageId: `${prefix}-p` });
analytics.identify({ userId, anonymousId, traits: { email: `Node.${prefix}@Example.com` }, messageId: `${prefix}-i` });
analytics.track({ userId, event: "Order Completed", properties: { total: 19.5 }, messageId: `${prefix}-t` });
analytics.track({ userId, event: "Product Viewed", properties: { sku: "A-1" }, messageId: `${prefix}-v` });
await analytics.closeAndFlush({ timeout: 10000 });
process.exit(failed ? 1 : 0);
