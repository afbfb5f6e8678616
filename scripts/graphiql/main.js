// GraphiQL for /graphql: queries over HTTP, subscriptions over graphql-transport-ws, both on
// the page's own origin. The page (apidocs/pages.py graphiql_page) gives the endpoint in
// data-endpoint and the example operations as a JSON block; nothing is fetched from elsewhere.
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import "graphiql/style.css";

const url = new URL(document.body.dataset.endpoint, document.baseURI);
const socket = new URL(url);
socket.protocol = url.protocol === "https:" ? "wss:" : "ws:";
const fetcher = createGraphiQLFetcher({ url: url.href, subscriptionUrl: socket.href });
const tabs = JSON.parse(document.getElementById("examples").textContent);

createRoot(document.getElementById("graphiql")).render(
  createElement(GraphiQL, { fetcher, defaultTabs: tabs, defaultEditorToolsVisibility: "variables" }),
);
