// What a position of a rule instance means, in words, for the rules page and the person page.

export function maxSequence(rule) {
  return Math.max(0, ...(rule.conditions || []).map((c) => Number(c.sequence) || 0));
}

export function positionNote(rule, p) {
  const next = (rule.conditions || []).filter((c) => Number(c.sequence) === p + 1);
  const exit = next.find((c) => c.type === "exit");
  if (exit) {
    if (exit.match) return `waiting for the exit event${exit.within ? ` (within ${exit.within})` : ""}`;
    return exit.wait ? `exits after ${exit.wait}` : "exits at once";
  }
  const step = next.find((c) => c.type === "step");
  if (step) return `waiting for step ${p + 1}${step.within ? ` (within ${step.within})` : ""}`;
  return "";
}
