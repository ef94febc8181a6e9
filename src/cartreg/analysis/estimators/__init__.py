"""Small estimators lifelines does not have, each in its own module and each equal to R.

========================================  ===========================================
estimator                                 reproduces (R)
========================================  ===========================================
``CumulativeIncidenceFitter``             ``cmprsk::cuminc`` estimates and variances
``GrayTest``                              ``cmprsk::cuminc(..., group)$Tests``
``FineGrayFitter``                        ``cmprsk::crr`` coefficients and variance
``CoxZphTest``                            ``survival::cox.zph`` (transform ``"km"``)
========================================  ===========================================

They follow lifelines' conventions: ``fit(...)`` returns the fitter, fitted attributes end in
``_``. Inputs are numpy arrays (no polars, no pandas); tied times are handled exactly, never
jittered, so the results do not depend on row order.
"""

from cartreg.analysis.estimators.aalen_johansen import CumulativeIncidenceFitter
from cartreg.analysis.estimators.cox_zph import CoxZphTest
from cartreg.analysis.estimators.fine_gray import FineGrayFitter
from cartreg.analysis.estimators.gray_test import GrayTest

__all__ = ["CoxZphTest", "CumulativeIncidenceFitter", "FineGrayFitter", "GrayTest"]
