// Text for a terminal: model and web text stripped of escape sequences and control characters before a face prints it.

/**
 * OSC, DCS, SOS, PM and APC strings (7-bit `ESC ]` `ESC P` `ESC X` `ESC ^` `ESC _` or their C1 bytes), up to
 * BEL or ST, or to the end when cut off: window titles, OSC-8 links (only the link's visible text stays), sixels.
 */
const STRING_SEQUENCE = /(?:\u001b[\]PX^_]|[\u0090\u0098\u009d\u009e\u009f])[\s\S]*?(?:\u0007|\u001b\\|\u009c|$)/g;
/** CSI sequences (`ESC [` or the C1 byte): colours, cursor moves, screen clears; a cut-off one too. */
const CSI_SEQUENCE = /(?:\u001b\[|\u009b)[\u0030-\u003f]*[\u0020-\u002f]*[\u0040-\u007e]?/g;
/** Any other escape: ESC, its intermediate bytes and its final byte (a terminal reset is `ESC c`). */
const OTHER_ESCAPE = /\u001b[\u0020-\u002f]*[\u0030-\u007e]?/g;
/** The C0 controls but newline and tab (BEL, CR, backspace, …), DEL and the C1 controls. */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * `text` as plain text for a terminal: escape sequences removed whole, other control characters
 * removed; newlines and tabs kept. Model replies and web pages are not trusted to drive the
 * terminal (retitle it, hide text, plant links). JSON output does not need it: JSON escapes them.
 */
export function terminalText(text: string): string {
  return text.replace(STRING_SEQUENCE, "").replace(CSI_SEQUENCE, "").replace(OTHER_ESCAPE, "").replace(CONTROL, "");
}
