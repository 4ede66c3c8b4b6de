// The WGSL kernels of the kernel contract (src/engines/fast/kernels.ts), on GPU arrays: each takes a
// Recorder first and otherwise the contract's arguments, with GpuArray for Float32Array/Int32Array.
// They record work; nothing runs until the Recorder is submitted, and nothing is read back.
// Beside them, the steps the fast engine writes as TypeScript loops (rows.ts, elementwise.ts) and the
// optimizer steps besides Adam (sgd.ts).

export { activationBackward, activationForward } from "./activations";
export { adamUpdate } from "./adam";
export { addInto, biasAdd, columnSum, multiply, residualAdd } from "./elementwise";
export { attentionBackward, attentionForward } from "./attention";
export { softmaxCrossEntropy } from "./cross-entropy";
export { GpuArray, GpuContext, Recorder } from "./dispatch";
export { layerNormBackward, layerNormForward } from "./layer-norm";
export { matmul } from "./matmul";
export { gatherRows, scatterAddRows } from "./rows";
export { grokfastFilter, orthogonalGrad, sgdUpdate } from "./sgd";
export { hyperparameterRecords, StepHyperparameters } from "./hyperparameters";
export { MatmulBatch } from "./matmul";
