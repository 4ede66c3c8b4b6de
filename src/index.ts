// The library API for notebooks and scripts. See the README's "Library" section.

export { OPERATIONS, buildTable, findOperation, symbolLabel } from "./data/operations";
export type { Operation, OperationTable } from "./data/operations";
export { makeDataset, encodeInputs } from "./data/dataset";
export type { Dataset, DatasetConfig, Examples } from "./data/dataset";
export { S5_ELEMENTS, s5Compose, s5Inverse, s5Label, s5FromCycles, s5Subgroup } from "./data/s5";
export { PAPER_TRANSFORMER, DEFAULT_MLP, paramSpecs, initParams, countParams } from "./model/config";
export type { ModelConfig, TransformerConfig, MlpConfig, ModelDims, OutputKind } from "./model/config";
export { PAPER_OPTIMIZER, learningRate, orthogonalizeGradient } from "./optim/optimizer";
export type { OptimizerConfig } from "./optim/optimizer";
export { paperConfig, normalizeConfig, withChanges, setConfigField } from "./config/run-config";
export type { RunConfig, TrainingConfig, EvalSchedule } from "./config/run-config";
export { PRESETS, demoConfig, fig1Config, FIG2_OPTIMIZER_VARIANTS } from "./training/presets";
export { train } from "./training/trainer";
export type { TrainOptions, TrainResult } from "./training/trainer";
export { trainPack, trainInPacks } from "./training/pack";
export type { PackOptions, PackResult } from "./training/pack";
export { ProgressDisplay, ProgressCounter, formatDuration } from "./training/progress";
export type { ProgressDisplayOptions, ProgressMode, ProgressStream } from "./training/progress";
export { createEngine } from "./engines/index";
export type { Engine, Batch, EvalResult } from "./engines/engine";
export { RunStore, defaultStoreRoot, displayPath } from "./store/run-store";
export type { RunInfo, RunState, Metrics, MetricsRow } from "./store/run-store";
export { listRuns, loadRun, metricsFrame, loadWeights, ensureSnapshots } from "./analysis/runs";
export type { SnapshotOptions } from "./analysis/runs";
export { tableAnswers, predictAnswers, predictLogits, wholeTable } from "./analysis/predict";
export type { TableAnswers } from "./analysis/predict";
export type { NamedTensors, Tensor32 } from "./util/tensors";
export { UserError, Interrupted } from "./util/errors";
export {
  showFigure,
  showMarkdown,
  saveFigure,
  renderFigurePng,
  checkFigurePage,
  figureBundle,
  resetPlotlyInline,
} from "./plot/index";
export type { Figure, FigurePng, SavedFigure } from "./plot/index";
export { notebookPreset, byPreset, figure, NOTEBOOK_PRESETS } from "./notebooks/notebook";
export type { Preset } from "./notebooks/notebook";
export { comparisonTable, showComparisonTable, VERDICTS } from "./notebooks/report";
export type { ComparisonRow, Verdict } from "./notebooks/report";
export { expandSweep, loadSweepSpec, describeRun } from "./sweeps/spec";
export type { SweepSpec, SweepRun, FieldValue } from "./sweeps/spec";
export { runSweep, sweepStatus, defaultWorkers } from "./sweeps/runner";
export type { SweepOptions, SweepResult, SweepRunResult, SweepRunStatus } from "./sweeps/runner";
export { summarizeRuns, quantile } from "./analysis/sweeps";
export type { GroupSummary } from "./analysis/sweeps";
export { sharpnessOf, runSharpness, maximizeInBox, randomSubspace } from "./analysis/sharpness";
export type { SharpnessOptions, SharpnessResult, MaximizeOptions, BoxMaximum, Subspace } from "./analysis/sharpness";
export { symmetryFloor, tableSymmetries } from "./analysis/symmetry";
export type { SymmetryFloor } from "./analysis/symmetry";
export {
  symbolVectors,
  tsne2d,
  fourierSpectrum,
  keyFrequencies,
  fourierCircle,
  nearestNeighbourShare,
  chanceShare,
  spearman,
} from "./analysis/embeddings";
export type {
  FourierSpectrum,
  FourierCircle,
  TsneOptions,
  SpearmanOptions,
  SpearmanResult,
} from "./analysis/embeddings";
export {
  projectKeyFrequencies,
  progressMeasures,
  progressPhases,
  changeOnset,
  crossEntropyOf,
  gini,
  fourierGini,
} from "./analysis/progress-measures";
export type { TableLogits, ProgressMeasures, ProgressPhases } from "./analysis/progress-measures";
export { detectSpikes, growthBefore, duringSpike, DEFAULT_SPIKE_RULE } from "./analysis/spikes";
export type { LossSpike, SpikeRule } from "./analysis/spikes";
export { classifyRun, PHASES, PHASE_RULES } from "./analysis/phases";
export type { Phase, PhaseOfRun } from "./analysis/phases";
