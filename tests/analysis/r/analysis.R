# The reference analysis in R: every statistic cartreg reports, recomputed by survival and
# cmprsk from the datasets `cartreg analyze` writes (adsl.csv, adtte.csv, adtte_tv.csv).
#
#   Rscript analysis.R ANALYSIS_DIR PLAN.csv > reference.json
#
# PLAN.csv has one row per statistic: key, type, paramcd, covariates (space separated),
# strata, site, landmark_days, landmarks (space separated months). The types and the R calls:
#
#   km        survfit(Surv(months, evntcd == 1) ~ 1, conf.type = "log-log")
#   logrank   survdiff(Surv(months, evntcd == 1) ~ burden)      (HIGH vs LOW burden)
#   followup  survfit(Surv(months, evntcd == 0) ~ 1, conf.type = "log-log")  (reverse KM)
#   cif       cmprsk::cuminc(months, evntcd); timepoints()
#   gray      cmprsk::cuminc(months, evntcd, burden)$Tests
#   cox       coxph(Surv(months, evntcd == 1) ~ covariates [+ strata(site_id)]); cox.zph()
#   ctv       coxph(Surv(tstart, tstop, event) ~ covariates, data = adtte_tv)
#   fg        cmprsk::crr(months, evntcd, cov1 = covariates, failcode = 1, cencode = 0)
#   prop      binom.test(x, n)$conf.int, with x and n counted from adsl
#
# months = aval_days / 30.4375 (the same arithmetic as cartreg, from the integer days).
suppressPackageStartupMessages({ library(survival); library(cmprsk) })
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(here, "json.R"))
dir <- args[[1]]
plan <- read.csv(args[[2]], stringsAsFactors = FALSE, na.strings = "")
adsl <- read.csv(file.path(dir, "adsl.csv"), stringsAsFactors = FALSE, na.strings = "")
adtte <- read.csv(file.path(dir, "adtte.csv"), stringsAsFactors = FALSE, na.strings = "")
tv <- read.csv(file.path(dir, "adtte_tv.csv"), stringsAsFactors = FALSE, na.strings = "")
DAYS_PER_MONTH <- 30.4375
adtte$months <- adtte$aval_days / DAYS_PER_MONTH
tv$tstart <- tv$tstart_day / DAYS_PER_MONTH
tv$tstop <- tv$tstop_day / DAYS_PER_MONTH
z <- qnorm(0.975)

words <- function(x) if (is.na(x) || x == "") character(0) else strsplit(x, " ")[[1]]
endpoint_rows <- function(p) adtte[adtte$paramcd == p, ]
with_adsl <- function(p) merge(endpoint_rows(p), adsl, by = c("patient_key", "site_id"))
with_burden <- function(p) {
  d <- with_adsl(p)
  d[!is.na(d$burden) & d$burden %in% c("HIGH", "LOW"), ]
}

km_block <- function(d, event, landmarks) {
  fit <- survfit(Surv(d$months, event) ~ 1, conf.type = "log-log")
  tab <- summary(fit)$table
  lm <- lapply(landmarks, function(t) {
    if (t > max(d$months)) return(list(months = t, estimate = NA, lower = NA, upper = NA))
    s <- summary(fit, times = t, extend = TRUE)
    list(months = t, estimate = s$surv, lower = s$lower, upper = s$upper)
  })
  list(n = nrow(d), events = sum(event), median = unname(tab["median"]),
       lcl = unname(tab["0.95LCL"]), ucl = unname(tab["0.95UCL"]), landmarks = lm)
}

cif_block <- function(d, landmarks) {
  fit <- cuminc(d$months, d$evntcd)
  out <- list(n = nrow(d), events = sum(d$evntcd == 1), competing = sum(d$evntcd == 2))
  for (cause in c("1", "2")) {
    name <- paste("1", cause)
    if (is.null(fit[[name]])) next
    curve <- fit[[name]]
    est <- curve$est
    v <- curve$var
    defined <- est > 0 & est < 1
    theta <- log(-log(est))
    se <- sqrt(v) / (est * abs(log(est)))
    band <- function(sign) ifelse(defined, exp(-exp(theta + sign * z * se)), NA)
    reach <- function(values) {
      i <- which(!is.na(values) & values >= 0.5 - 1e-9)
      if (length(i)) curve$time[i[1]] else NA
    }
    lm <- lapply(landmarks, function(t) {
      if (t > max(d$months)) return(list(months = t, estimate = NA, variance = NA))
      tp <- timepoints(fit, t)
      f <- unname(tp$est[name, 1])
      vt <- unname(tp$var[name, 1])
      ok <- !is.na(f) && f > 0 && f < 1
      th <- log(-log(f))
      sf <- sqrt(vt) / (f * abs(log(f)))
      list(months = t, estimate = f, variance = vt,
           lower = if (ok) exp(-exp(th + z * sf)) else NA,
           upper = if (ok) exp(-exp(th - z * sf)) else NA)
    })
    out[[paste0("cause", cause)]] <- list(
      median = reach(est), ci_low = reach(band(-1)), ci_high = reach(band(1)), landmarks = lm)
  }
  out
}

cox_data <- function(row) {
  d <- with_adsl(row$paramcd)
  if (!is.na(row$site)) d <- d[d$site_id == row$site, ]
  if (!is.na(row$landmark_days)) {
    d <- d[d$aval_days > row$landmark_days, ]
    d$months <- (d$aval_days - row$landmark_days) / DAYS_PER_MONTH
  }
  d
}

coef_block <- function(fit) {
  s <- summary(fit)
  list(terms = arr(rownames(s$coefficients)), coef = arr(unname(s$coefficients[, "coef"])),
       se = arr(unname(s$coefficients[, "se(coef)"])),
       hr = arr(unname(s$conf.int[, "exp(coef)"])),
       lower = arr(unname(s$conf.int[, "lower .95"])), upper = arr(unname(s$conf.int[, "upper .95"])),
       p = arr(unname(s$coefficients[, "Pr(>|z|)"])), n = fit$n, events = fit$nevent)
}

count_prop <- function(x, n) {
  ci <- binom.test(x, n)$conf.int
  list(numerator = x, denominator = n, low = ci[1], high = ci[2])
}

subset_prop <- function(keep, column) {
  v <- adsl[keep, column]
  count_prop(sum(v %in% 1), length(v))
}

proportion <- function(key) {
  one <- function(v) sum(v == 1, na.rm = TRUE)
  switch(key,
    CR_DAY28_ITT = count_prop(one(adsl$cr_day28), nrow(adsl)),
    CR_DAY28_EVALUABLE = subset_prop(adsl$evaluable_day28 %in% 1, "cr_day28"),
    CR_BEST_ITT = count_prop(one(adsl$cr_best), nrow(adsl)),
    CR_BEST_EVALUABLE = subset_prop(adsl$evaluable_best %in% 1, "cr_best"),
    SALVAGE_UPTAKE_PROGRESSORS = subset_prop(adsl$progressed %in% 1, "salvaged"),
    SALV_CR_EVALUABLE_EVALUABLE = subset_prop(adsl$salvaged %in% 1 & adsl$salvage_evaluable %in% 1,
                                              "salvage_cr"),
    SALV_CR_OVERALL = subset_prop(adsl$salvaged %in% 1, "salvage_cr"),
    SALV_CR_ANTIBODY = subset_prop(adsl$salvaged %in% 1 & adsl$salvage_class %in% "ANTIBODY",
                                   "salvage_cr"),
    stop(paste("unknown proportion", key)))
}

out <- list()
for (i in seq_len(nrow(plan))) {
  row <- plan[i, ]
  landmarks <- as.numeric(words(row$landmarks))
  covs <- words(row$covariates)
  out[[row$key]] <- switch(row$type,
    km = {
      d <- endpoint_rows(row$paramcd)
      km_block(d, d$evntcd == 1, landmarks)
    },
    followup = {
      d <- endpoint_rows(row$paramcd)
      if (!is.na(row$site)) d <- d[d$site_id == row$site, ]
      km_block(d, d$evntcd == 0, numeric(0))
    },
    logrank = {
      d <- with_burden(row$paramcd)
      test <- survdiff(Surv(months, evntcd == 1) ~ burden, data = d)
      groups <- lapply(c("HIGH", "LOW"), function(g) {
        sub <- d[d$burden == g, ]
        km_block(sub, sub$evntcd == 1, numeric(0))
      })
      names(groups) <- c("HIGH", "LOW")
      list(chisq = test$chisq, p = pchisq(test$chisq, length(test$n) - 1, lower.tail = FALSE),
           groups = groups)
    },
    cif = cif_block(endpoint_rows(row$paramcd), landmarks),
    gray = {
      d <- with_burden(row$paramcd)
      tests <- cuminc(d$months, d$evntcd, d$burden)$Tests
      groups <- lapply(c("HIGH", "LOW"), function(g) cif_block(d[d$burden == g, ], numeric(0)))
      names(groups) <- c("HIGH", "LOW")
      list(causes = arr(rownames(tests)), stat = arr(unname(tests[, "stat"])),
           p = arr(unname(tests[, "pv"])), groups = groups)
    },
    cox = {
      d <- cox_data(row)
      rhs <- paste(covs, collapse = " + ")
      if (!is.na(row$strata)) rhs <- paste0(rhs, " + strata(", row$strata, ")")
      fit <- coxph(as.formula(paste("Surv(months, evntcd == 1) ~", rhs)), data = d, ties = "efron")
      zph <- cox.zph(fit)$table
      c(coef_block(fit), list(zph_terms = arr(rownames(zph)), zph_chisq = arr(unname(zph[, "chisq"])),
                              zph_p = arr(unname(zph[, "p"]))))
    },
    ctv = {
      d <- tv[tv$paramcd == row$paramcd, ]
      fit <- coxph(as.formula(paste("Surv(tstart, tstop, event) ~", paste(covs, collapse = " + "))),
                   data = d, ties = "efron")
      coef_block(fit)
    },
    fg = {
      d <- cox_data(row)
      d <- d[complete.cases(d[, covs, drop = FALSE]), ]
      # crr's default gtol (1e-6) stops short of the maximum by ~1e-5 on some data; cartreg
      # converges to 1e-10, so the reference is taken to 1e-9 (1e-10 does not converge in crr)
      fit <- crr(d$months, d$evntcd, cov1 = as.matrix(d[, covs, drop = FALSE]), failcode = 1,
                 cencode = 0, gtol = 1e-9, maxiter = 100)
      se <- sqrt(diag(fit$var))
      list(converged = fit$converged, coef = arr(unname(fit$coef)), se = arr(unname(se)),
           hr = arr(unname(exp(fit$coef))), lower = arr(unname(exp(fit$coef - z * se))),
           upper = arr(unname(exp(fit$coef + z * se))),
           p = arr(unname(2 * pnorm(-abs(fit$coef / se)))), n = fit$n)
    },
    prop = proportion(row$paramcd),
    stop(paste("unknown type", row$type)))
}
cat(json(out), "\n")
