// response_mode=form_post: post the authorization response to the app at once.
document.getElementById("response").submit();
