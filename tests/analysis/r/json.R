# A minimal JSON writer for the reference scripts (base R has none; jsonlite is not a
# dependency). Numbers are written with 17 significant digits, NA/NaN/Inf as null.
# A named list becomes an object, an unnamed list an array, a vector of length != 1 an array;
# wrap a vector in arr() to force an array even when it has one element.
arr <- function(x) structure(list(x), class = "json_array")

json <- function(x) {
  if (inherits(x, "json_array")) {
    v <- x[[1]]
    if (length(v) == 0) return("[]")
    return(paste0("[", paste(vapply(seq_along(v), function(i) json(v[[i]]), ""), collapse = ","), "]"))
  }
  if (is.null(x)) return("null")
  if (is.list(x)) {
    keys <- names(x)
    if (!is.null(keys) && all(keys != "")) {
      parts <- vapply(seq_along(x), function(i) paste0(json(keys[[i]]), ":", json(x[[i]])), "")
      return(paste0("{", paste(parts, collapse = ","), "}"))
    }
    return(paste0("[", paste(vapply(x, json, ""), collapse = ","), "]"))
  }
  if (is.factor(x)) x <- as.character(x)
  if (is.character(x)) {
    v <- ifelse(is.na(x), "null", paste0("\"", gsub("\"", "\\\\\"", gsub("\\\\", "\\\\\\\\", x)), "\""))
  } else if (is.logical(x)) {
    v <- ifelse(is.na(x), "null", ifelse(x, "true", "false"))
  } else {
    v <- ifelse(is.finite(x), sprintf("%.17g", as.numeric(x)), "null")
  }
  if (length(v) == 1) return(v)
  paste0("[", paste(v, collapse = ","), "]")
}
