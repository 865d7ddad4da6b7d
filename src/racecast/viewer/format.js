// Text formatting shared by the widgets: clocks, gaps, lap times, tyres, track status.

/** Seconds -> "H:MM:SS" (or "M:SS" under an hour). */
export function clock(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Lap time seconds -> "1:23.456". */
export function lapTime(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const m = Math.floor(seconds / 60);
  const s = seconds - m * 60;
  return `${m}:${s.toFixed(3).padStart(6, "0")}`;
}

/** A gap in seconds -> "+1.234" (or "+1 LAP" when `laps` >= 1). */
export function gap(seconds, laps = 0) {
  if (laps >= 1) return `+${laps} LAP${laps > 1 ? "S" : ""}`;
  if (seconds == null || !Number.isFinite(seconds)) return "";
  return `+${seconds.toFixed(3)}`;
}

/** Speed factor -> "0.25×", "4×". */
export function speed(s) {
  return `${Number(s.toFixed(2))}×`;
}

/** Tyre compounds by code (race.py Compound): letter, name, colour. */
export const COMPOUNDS = {
  0: { letter: "?", name: "Unknown", color: "#8b93a7" },
  1: { letter: "S", name: "Soft", color: "#ff3b3b" },
  2: { letter: "M", name: "Medium", color: "#ffd12e" },
  3: { letter: "H", name: "Hard", color: "#f0f0f0" },
  4: { letter: "I", name: "Intermediate", color: "#3ec43e" },
  5: { letter: "W", name: "Wet", color: "#2f8cff" },
};
const COMPOUND_NAMES = { UNKNOWN: 0, SOFT: 1, MEDIUM: 2, HARD: 3, INTERMEDIATE: 4, INTER: 4, WET: 5 };

export function compound(code) {
  if (typeof code === "string") code = COMPOUND_NAMES[code.toUpperCase()] ?? 0;
  return COMPOUNDS[code] ?? COMPOUNDS[0];
}

/** Track status by code (race.py TrackStatus): key, banner text, colour. */
export const TRACK_STATUS = {
  1: { key: "GREEN", text: "Track clear", color: "#1fa34a" },
  2: { key: "YELLOW", text: "Yellow flag", color: "#f2c200" },
  4: { key: "SC", text: "Safety car", color: "#ff9f1a" },
  5: { key: "RED", text: "Red flag", color: "#e5252a" },
  6: { key: "VSC", text: "Virtual safety car", color: "#ffb84d" },
  7: { key: "VSC_ENDING", text: "VSC ending", color: "#ffd591" },
};
const STATUS_CODES = { GREEN: 1, CLEAR: 1, YELLOW: 2, SC: 4, SAFETYCAR: 4, RED: 5, VSC: 6, VSC_ENDING: 7, VSCENDING: 7 };

/** Accept a track status as code (1, "4") or name ("SC") and return its code. */
export function statusCode(value) {
  if (typeof value === "number") return TRACK_STATUS[value] ? value : 1;
  const n = Number(value);
  if (Number.isInteger(n) && TRACK_STATUS[n]) return n;
  return STATUS_CODES[String(value).toUpperCase().replace(/[\s-]/g, "")] ?? 1;
}

/** Escape text for innerHTML. */
export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
