export { SchemaRegistry } from './registry.js';
export type { SchemaRegistryOptions, SchemaVersion, TypeSummary, RegisterResult } from './registry.js';
export { SchemaCompiler } from './compiler.js';
export type { CompiledSchema, ValidationLimits, ValidationResult } from './compiler.js';
export { backwardIncompatibilities } from './compatibility.js';
export { SchemaErrors } from './errors.js';
