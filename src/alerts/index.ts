export { AlertManager } from './alert-manager.js';
export type { AlertManagerOptions, AlertRuleInfo, AlertGroup, AlertTransition, AlertNotification, AlertState } from './alert-manager.js';
export { validateRule, parseDuration } from './rule.js';
export type { AlertRuleSpec, AlertRule, Severity, Comparison } from './rule.js';
export { AlertErrors } from './errors.js';
