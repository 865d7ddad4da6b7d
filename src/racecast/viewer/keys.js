// Keyboard shortcuts (the help overlay in index.html lists them): a key event becomes one named
// action, plain data, so the mapping is tested in Node; the page runs the action (viewer.js).

export const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64];
export const SPEED_KEYS = { 1: 1, 2: 4, 3: 16, 4: 64 };

/** The speed preset nearest `s` (the server may report one that is not a preset). */
export function nearestSpeed(s) {
  return SPEEDS.reduce((b, x) => (Math.abs(Math.log(x / s)) < Math.abs(Math.log(b / s)) ? x : b), 1);
}

/** The preset `steps` away from the one nearest `s` (clamped to the presets). */
export function speedStep(s, steps) {
  const k = SPEEDS.indexOf(nearestSpeed(s)) + steps;
  return SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, k))];
}

/**
 * The action for a keydown: [name, argument] or null (not ours: the browser keeps the key).
 * `ev`: {key, shiftKey, ctrlKey, metaKey, altKey, tag} (tag: the focused element's tagName);
 * `speed`: the speed asked for now (arrow keys step from its preset).
 */
export function keyAction(ev, speed) {
  const tag = ev.tag || "";
  if (ev.key === "Escape") return ["escape"];
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return null; // typing
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return null; // the browser's shortcuts
  if ((tag === "BUTTON" || tag === "A") && (ev.key === " " || ev.key === "Enter")) return null; // keyboard users activate the focused control
  switch (ev.key) {
    case " ": case "k": return ["togglePlay"];
    case "ArrowLeft": return ["step", ev.shiftKey ? -10 : -1];
    case "ArrowRight": return ["step", ev.shiftKey ? 10 : 1];
    case "ArrowUp": return ["speed", speedStep(speed, 1)];
    case "ArrowDown": return ["speed", speedStep(speed, -1)];
    case "Home": return ["restart"];
    case "1": case "2": case "3": case "4": return ["speed", SPEED_KEYS[ev.key]];
    case "?": return ["help"];
    case "l": case "L": return ["labels"];
    case "c": case "C": return ["charts"];
    case "p": case "P": return ["pitPredict"];
    case "]": return ["event", 1, false];
    case "[": return ["event", -1, false];
    case ".": return ["event", 1, true];
    case ",": return ["event", -1, true];
    case "g": case "G": return ["gapMode"];
    default: return null;
  }
}
