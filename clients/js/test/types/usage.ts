// Type-checked only (npm run typecheck): the public API as a TypeScript user writes it.
import { createElement, type ReactElement } from "react";
import type { ChatTransport, UIMessage } from "ai";
import {
  MarieClient,
  MarieError,
  waitFor,
  type ChatMessage,
  type ConversationSnapshot,
  type Part,
  type PendingApproval,
  type SendResult,
} from "@marie-rs/client";
import { useConversation, useConversations, useConnection, useMarieClient, useBudget } from "@marie-rs/client/react";
import { MarieChatTransport, UIChunkMapper } from "@marie-rs/client/ai-sdk";

declare const url: string;

export async function vanilla(): Promise<string> {
  const client = new MarieClient({ url, token: async () => "t", socketOptions: { transports: ["websocket"] } });
  client.registerTool<{ zone: string }, { time: string }>("get_time", {
    description: "time",
    parameters: { type: "object", properties: { zone: { type: "string" } } },
    execute: async ({ zone }) => ({ time: zone }),
  });
  const conv = client.conversation("c1");
  const unsubscribe = conv.subscribe(() => {
    const s: ConversationSnapshot = conv.getSnapshot();
    const first: ChatMessage | undefined = s.messages[0];
    const parts: readonly Part[] = s.running?.parts ?? [];
    const approvals: readonly PendingApproval[] = s.pendingApprovals;
    void first;
    void parts;
    void approvals;
  });
  await conv.join();
  const sent: SendResult = await conv.send("hi", { onBusy: "enqueue", attachments: ["f1"], answer: true });
  const streamId: string | undefined = sent.streamId;
  await conv.approve("ap", true, "ok");
  await conv.submitToolResult("call", { output: { a: 1 } });
  await conv.edit("m1", "again");
  await conv.regenerate();
  await conv.switchBranch("m1");
  await conv.markRead();
  conv.typing(true);
  await client.conversations.load({ query: "x" });
  const done = await waitFor(conv, (s) => s.running === null);
  unsubscribe();
  try {
    await conv.cancel();
  } catch (err) {
    if (err instanceof MarieError && err.code === "not_found") return "none";
  }
  // What a UI reads before a send, and the queue, the details and an upload with progress.
  const called: string[] = conv.mentions("@calc 12*7");
  const answered: boolean = conv.willAnswer("hello", undefined);
  const cancelling: boolean = conv.getSnapshot().queue[0]?.cancelling ?? false;
  const by: string | null | undefined = conv.getSnapshot().info?.updatedBy;
  const file = await client.uploadFile("c1", new Blob(["x"]), { name: "x.txt", onProgress: (sent: number, total: number) => void (sent / total) });
  await client.archiveConversation("c1", true);
  void [called, answered, cancelling, by, file.fileId];
  client.close();
  return `${streamId}:${done.messages.length}`;
}

export function Component({ id }: { id: string }): ReactElement {
  const client = useMarieClient({ url, token: "t" });
  const conn = useConnection(client);
  const budget = useBudget(client);
  const c = useConversation(client, id);
  const list = useConversations(client);
  const send = (): Promise<SendResult> => c.send("hello");
  void send;
  return createElement("p", null, `${conn.status} ${budget?.used ?? 0} ${c.messages.length} ${list.items.length} ${c.typingUsers.join(",")}`);
}

export const transport: ChatTransport<UIMessage> = new MarieChatTransport(new MarieClient({ url, token: "t" }), {
  tools: { get_time: { description: "time", parameters: { type: "object" } } },
});
export const mapper = new UIChunkMapper();
