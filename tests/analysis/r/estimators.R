# Reference values for cartreg's competing-risk and PH-test estimators, computed by R.
#
#   Rscript estimators.R DATA.csv TIMES.csv > reference.json
#
# DATA.csv: dataset, time, status (0 censored, 1..K causes), grp, stratum, x1, x2.
# TIMES.csv: dataset, time (where cumulative incidence is read).
# For each dataset: cmprsk::cuminc estimates and variances (no groups), Gray's tests by grp
# (unstratified and stratified), cmprsk::crr of cause 1 on x1 + x2 (tight gtol), and coxph
# of any event on x1 + x2 (Efron; unstratified and stratified) with cox.zph.
suppressPackageStartupMessages({ library(survival); library(cmprsk) })
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(here, "json.R"))
data <- read.csv(args[[1]], stringsAsFactors = FALSE)
grid <- read.csv(args[[2]], stringsAsFactors = FALSE)

zph_table <- function(fit) {
  tab <- cox.zph(fit)$table
  list(terms = arr(rownames(tab)), chisq = arr(unname(tab[, "chisq"])), p = arr(unname(tab[, "p"])))
}

gray <- function(d, strata) {
  fit <- if (strata) cuminc(d$time, d$status, d$grp, d$stratum) else cuminc(d$time, d$status, d$grp)
  tests <- fit$Tests
  list(causes = arr(rownames(tests)), stat = arr(unname(tests[, "stat"])), pv = arr(unname(tests[, "pv"])))
}

out <- list()
for (name in unique(data$dataset)) {
  d <- data[data$dataset == name, ]
  times <- grid$time[grid$dataset == name]
  fit <- cuminc(d$time, d$status)
  causes <- sort(unique(d$status[d$status > 0]))
  tp <- timepoints(fit, times)
  cif <- list()
  for (k in causes) {
    row <- paste("1", k)
    cif[[as.character(k)]] <- list(est = arr(unname(tp$est[row, ])), var = arr(unname(tp$var[row, ])))
  }
  crr_fit <- crr(d$time, d$status, cov1 = cbind(x1 = d$x1, x2 = d$x2), failcode = 1, cencode = 0,
                 gtol = 1e-12, maxiter = 100)
  cox <- coxph(Surv(time, status > 0) ~ x1 + x2, data = d, ties = "efron")
  cox_s <- coxph(Surv(time, status > 0) ~ x1 + x2 + strata(stratum), data = d, ties = "efron")
  out[[name]] <- list(
    times = arr(times),
    cif = cif,
    gray = gray(d, FALSE),
    gray_strata = gray(d, TRUE),
    crr = list(coef = arr(unname(crr_fit$coef)), se = arr(unname(sqrt(diag(crr_fit$var)))),
               converged = crr_fit$converged),
    cox = list(coef = arr(unname(coef(cox))), zph = zph_table(cox)),
    cox_strata = list(coef = arr(unname(coef(cox_s))), zph = zph_table(cox_s))
  )
}
cat(json(out), "\n")
