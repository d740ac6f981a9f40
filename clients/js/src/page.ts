// The browser bundle of the chat example page (`examples/chat/static/marie-client.js`): one
// IIFE, global `Marie`, socket.io-client inside. React and the AI SDK stay out of it (the
// chunk mapping has no dependency and comes along).
export * from "./index.js";
export { UIChunkMapper } from "./ai-sdk.js";
export { io } from "socket.io-client";
