export { WebhookSender, redactUrl } from './webhook.js';
export type { WebhookOptions, DeliveryResult } from './webhook.js';
