// A graphql-ws client (npm's graphql-ws, on the ws package) for the tests: subscribes with
// the operation given, prints each result as one JSON line, exits after COUNT results.
//
//   node graphql_ws_client.mjs URL OPERATION_JSON COUNT [CONNECTION_PARAMS_JSON]
//
// OPERATION_JSON is {"query", "variables"?, "operationName"?}. Lines out: {"ready": true}
// once the connection is acknowledged, then {"next": result} per result, or {"error": [...]}
// or {"closed": {"code", "reason"}}; the exit status is 0 only when COUNT results arrived.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, operationJson, countText, paramsJson] = process.argv.slice(2);
const operation = JSON.parse(operationJson);
const wanted = Number(countText);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

let received = 0;
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: paramsJson ? JSON.parse(paramsJson) : undefined,
  retryAttempts: 0,
  lazy: false,
  on: {
    connected: () => print({ ready: true }),
    closed: (event) => print({ closed: { code: event.code, reason: event.reason } }),
  },
});
const timer = setTimeout(() => {
  print({ timeout: received });
  process.exit(2);
}, 60000);

client.subscribe(operation, {
  next: (result) => {
    print({ next: result });
    received += 1;
    if (received >= wanted) {
      clearTimeout(timer);
      client.dispose();
      process.exit(0);
    }
  },
  error: (error) => {
    print({ error: Array.isArray(error) ? error : { message: String(error?.reason ?? error) } });
    clearTimeout(timer);
    process.exit(1);
  },
  complete: () => {
    print({ complete: true });
    clearTimeout(timer);
    process.exit(received >= wanted ? 0 : 1);
  },
});
