export { SchemaRegistry } from './registry.js';
export type {
  SchemaRegistryOptions,
  SchemaVersion,
  CompiledSchema,
  ValidationResult,
  TypeSummary,
  RegisterResult,
} from './registry.js';
export { backwardIncompatibilities } from './compatibility.js';
export { SchemaErrors } from './errors.js';
