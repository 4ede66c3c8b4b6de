// The library API for notebooks and scripts. See the README's "Library" section.

export { OPERATIONS, buildTable, findOperation, symbolLabel } from "./data/operations";
export type { Operation, OperationTable } from "./data/operations";
export { makeDataset, encodeInputs } from "./data/dataset";
export type { Dataset, DatasetConfig, Examples } from "./data/dataset";
export { S5_ELEMENTS, s5Compose, s5Inverse, s5Label, s5FromCycles, s5Subgroup } from "./data/s5";
export { PAPER_TRANSFORMER, DEFAULT_MLP, paramSpecs, initParams, countParams } from "./model/config";
export type { ModelConfig, TransformerConfig, MlpConfig, ModelDims } from "./model/config";
export { PAPER_OPTIMIZER, learningRate } from "./training/optimizer";
export type { OptimizerConfig } from "./training/optimizer";
export { paperConfig, normalizeConfig, ConfigError } from "./training/config";
export type { RunConfig, TrainingConfig, EvalSchedule } from "./training/config";
export { PRESETS, demoConfig, fig1Config, FIG2_OPTIMIZER_VARIANTS } from "./training/presets";
export { train } from "./training/trainer";
export type { TrainOptions, TrainResult } from "./training/trainer";
export { createEngine } from "./engines/index";
export type { Engine, Batch, EvalResult } from "./engines/engine";
export { RunStore, defaultStoreRoot } from "./store/run-store";
export type { RunInfo, RunState, Metrics, MetricsRow } from "./store/run-store";
export { listRuns, loadRun, metricsFrame, loadWeights } from "./analysis/runs";
export type { NamedTensors, Tensor32 } from "./util/tensors";
export { showFigure, saveFigure, checkFigurePage, figureBundle, resetPlotlyInline } from "./plot/index";
export type { Figure, SavedFigure } from "./plot/index";
export { notebookPreset, byPreset, figure, NOTEBOOK_PRESETS } from "./notebooks/notebook";
export type { Preset } from "./notebooks/notebook";
