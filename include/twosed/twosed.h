// The whole public C++ API of twosed in one include. Most users need only the measurement
// engine (measure/engine.h; measure/measure.h for spec strings and files); the other headers are the layers it is built
// from.
//
//   model/     networks from spec strings, their parameters and parameter spaces
//   data/      data sources, .npy files, training/test splits
//   fisher/    exact Fisher spectra: the standard model and the Markov chain model
//   estimate/  2sED, Abbas ED, bootstrap errors, the generalisation estimate
//   measure/   the measurement engine (what `twosed measure` runs)
//   store/     the SQLite results store, runs, spectra files
//   train/     training
//   study/     model-selection studies, rank correlations
//   report/    figures
#pragma once

#include "twosed/data/data.h"
#include "twosed/data/npy.h"
#include "twosed/data/training_data.h"
#include "twosed/data/write_file.h"
#include "twosed/error.h"
#include "twosed/estimate/estimator.h"
#include "twosed/estimate/generalization.h"
#include "twosed/execution.h"
#include "twosed/fisher/fisher.h"
#include "twosed/fisher/markov.h"
#include "twosed/fisher/statistical_model.h"
#include "twosed/measure/engine.h"
#include "twosed/measure/measure.h"
#include "twosed/measure/result_json.h"
#include "twosed/model/model_spec.h"
#include "twosed/model/network.h"
#include "twosed/model/parameter_space.h"
#include "twosed/random.h"
#include "twosed/report/plot.h"
#include "twosed/store/results_store.h"
#include "twosed/store/runs.h"
#include "twosed/store/spectra_file.h"
#include "twosed/study/rank_correlation.h"
#include "twosed/study/study.h"
#include "twosed/train/train.h"
