/** Branded ids, so an offset cannot be passed where a partition is expected. */
export type PartitionId = number & { readonly __brand: 'PartitionId' };
export type Offset = number & { readonly __brand: 'Offset' };

export const partitionId = (n: number): PartitionId => n as PartitionId;
export const offset = (n: number): Offset => n as Offset;
