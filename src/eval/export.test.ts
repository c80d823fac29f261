// R1V4's tag form of a code call written by `loupe export --format r1v4`, from either dialect's conversation.
import { describe, expect, it } from "vitest";
import type { Turn } from "../core/state.js";
import { tagMessages } from "./export.js";
import type { Trajectory } from "./trajectory.js";

const RESULT = '{"result": "/mnt/data/temp_processed_images/179_1.jpg\\n", "type": "code"}';
const CODE = 'from PIL import Image\nImage.open("hr_bench_4k/179.jpg").crop((0, 0, 10, 10)).save("/mnt/data/temp_processed_images/179_1.jpg")';
const IMAGE = { type: "image" as const, id: "img_1", sha256: "ab", mime: "image/jpeg" as const };

function trajectory(dialect: Trajectory["dialect"], conversation: Turn[]): Trajectory {
  return { threadId: "t", question: "Q?", dialect, coords: "rel1000", tools: ["crop", "code"], plan: null, images: [], questionParts: [], steps: [], final: null, answerTag: null, usage: null, toolCalls: [], conversation };
}

describe("export --format r1v4: code calls", () => {
  const question: Turn = { role: "user", parts: [{ type: "text", text: "img_0 (20×20; path: hr_bench_4k/179.jpg):" }, { type: "text", text: "Q?" }] };
  const caption = "img_1 at /mnt/data/temp_processed_images/179_1.jpg (10×10; code):";

  it("tools dialect: the call as a <tool_call>, its result as R1V4's exact observation with the image after it", () => {
    const messages = tagMessages(
      trajectory("tools", [
        { role: "system", dialect: "tools", tools: ["crop", "code"], coords: "rel1000", code: { timeoutMs: 30000, memoryMb: 2048, outputBytes: 32768, maxImages: 8 } },
        question,
        { role: "assistant", text: "<think>crop it</think>\n", toolCalls: [{ id: "c1", name: "code", arguments: JSON.stringify({ code: CODE }) }] },
        { role: "tool", toolCallId: "c1", text: RESULT },
        { role: "user", parts: [{ type: "text", text: caption }, IMAGE] },
      ]),
    );
    expect(messages[0]!.content).toContain("# The code tool");
    expect(messages[2]!.content).toBe(`<think>crop it</think>\n<tool_call>${JSON.stringify({ name: "code", arguments: { code: CODE } })}</tool_call>`);
    expect(messages[3]).toEqual({ role: "user", content: `<observation>${RESULT}</observation>\n${caption}\n<image>`, images: [IMAGE] });
  });

  it("tools dialect with the image in the tool message (LOUPE_TOOL_IMAGES=tool): the same observation", () => {
    const messages = tagMessages(
      trajectory("tools", [
        { role: "system", dialect: "tools", tools: ["crop", "code"], coords: "rel1000" },
        question,
        { role: "assistant", text: "<think>crop it</think>", toolCalls: [{ id: "c1", name: "code", arguments: JSON.stringify({ code: CODE }) }] },
        { role: "tool", toolCallId: "c1", text: RESULT, parts: [{ type: "text", text: caption }, IMAGE] },
      ]),
    );
    expect(messages[3]).toEqual({ role: "user", content: `<observation>${RESULT}</observation>\n${caption}\n<image>`, images: [IMAGE] });
  });

  it("tags dialect: the observation is kept exactly as the model saw it", () => {
    const observation = `<observation>${RESULT}</observation>\n${caption}`;
    const messages = tagMessages(
      trajectory("tags", [
        { role: "system", dialect: "tags", tools: ["crop", "code"], coords: "rel1000" },
        question,
        { role: "assistant", text: `<think>crop it</think>\n<tool_call>${JSON.stringify({ name: "code", arguments: { code: CODE } })}</tool_call>` },
        { role: "user", parts: [{ type: "text", text: observation }, IMAGE] },
      ]),
    );
    expect(messages[3]).toEqual({ role: "user", content: `${observation}\n<image>`, images: [IMAGE] });
  });
});
